import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import { sandboxPaths } from '../storage/layout.js';
import { BASE, fakeHost, held, NOTHING_HELD, type FakeHost } from '../testing/fakes.js';
import { readPausedState, readSandboxState } from './record.js';

let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
});
afterEach(() => host.cleanup());

const ONE_RUNNING = { runtimes: ['one'], netns: [1], slots: 1, mounts: 1, envdClients: 1 };

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as ConnectError,
  );

/** What is in the templates dir besides finished templates (a staging dir left behind is a leak). */
async function staging(): Promise<string[]> {
  return (await readdir(host.layout.templatesDir).catch(() => [] as string[])).filter((e) =>
    e.startsWith('.'),
  );
}

describe('snapshot of a running sandbox', () => {
  it('makes the template and leaves the sandbox running (so recorded), its checkpoint spent', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const template = await host.manager.createSnapshot('one', 'snap');
    expect(template).toMatchObject({ kind: 'snapshot', name: 'snap' });
    expect(host.manager.get('one').status).toBe('running');
    expect(held(host)).toEqual(ONE_RUNNING);
    const paths = sandboxPaths(host.layout, 'one');
    expect(existsSync(paths.checkpoint)).toBe(false);
    expect((await readSandboxState(paths))?.info.status).toBe('running');
    expect(existsSync(paths.operationFile)).toBe(false);
    // And sandboxes start from it, by restore.
    await host.manager.create({ ...BASE, template: 'snap', id: 'two' });
    expect(host.runtime.calls).toContain('restore two from checkpoint');
  });

  // Bug: the snapshot's pause set the status without writing the paused-state file, so an agent that
  // died during the copy found no paused sandbox to adopt, and the checkpoint was lost.
  it('is paused on disk while the template is copied: an agent that dies then leaves it to the next, which runs it again', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const gate = host.faults.hold('storage.copyDiskImage');
    const snapshot = host.manager.createSnapshot('one', 'snap');
    await gate.reached;
    const paths = sandboxPaths(host.layout, 'one');
    expect((await readPausedState(paths))?.info.status).toBe('paused');
    expect(existsSync(paths.checkpoint)).toBe(true);

    // The snapshot is lost with its agent; the sandbox it paused is not.
    const next = await fakeHost(host.layout.root);
    expect(await next.manager.recoverAfterRestart()).toMatchObject({ running: ['one'], paused: [] });
    expect(next.manager.get('one').status).toBe('running');

    // The first agent, "dead", finds its checkpoint spent by the next one.
    gate.release();
    await snapshot.catch(() => undefined);
  });

  it('a failed copy removes the staged template and resumes the sandbox', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    host.faults.fail('storage.copyDiskImage');
    expect((await failure(host.manager.createSnapshot('one', 'snap')))?.message).toMatch(/injected/);
    expect(await staging()).toEqual([]);
    expect(host.manager.get('one').status).toBe('running');
    expect(held(host)).toEqual(ONE_RUNNING);
  });

  it('a caller that goes away during the copy: template removed, sandbox running again', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const ac = new AbortController();
    const gate = host.faults.hold('storage.copyDiskImage');
    const snapshot = failure(host.manager.createSnapshot('one', 'snap', ac.signal));
    await gate.reached;
    ac.abort(new ConnectError('the caller went away', Code.Canceled));
    gate.release();
    expect((await snapshot)?.code).toBe(Code.Canceled);
    expect(await staging()).toEqual([]);
    await expect(host.templates.resolve('snap')).rejects.toMatchObject({ code: Code.NotFound });
    expect(host.manager.get('one').status).toBe('running');
  });

  it('a resume after the snapshot that fails leaves it paused, saying why, on disk too', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    host.faults.fail('runtime.restore');
    await failure(host.manager.createSnapshot('one', 'snap'));
    const reason =
      /^paused: resuming after the snapshot failed \(.*injected failure at runtime.restore\); resume to retry$/;
    expect(host.manager.get('one').status).toBe('paused');
    expect(host.manager.get('one').statusReason).toMatch(reason);
    expect((await readPausedState(sandboxPaths(host.layout, 'one')))?.info.statusReason).toMatch(reason);
    expect(held(host)).toEqual(NOTHING_HELD);
    await expect(host.manager.resume('one')).resolves.toMatchObject({ status: 'running' });
  });

  it('a create from a snapshot that fails rolls back and lets the snapshot be deleted', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.createSnapshot('one', 'snap');
    for (const point of ['storage.copyDiskImage', 'storage.mount', 'runtime.restore', 'envd.init']) {
      host.faults.fail(point);
      await expect(host.manager.create({ ...BASE, template: 'snap', id: 'two' })).rejects.toThrow(point);
      expect(held(host)).toEqual(ONE_RUNNING);
    }
    await host.manager.deleteTemplate('snap');
  });
});

describe('snapshot of a paused sandbox', () => {
  it('is taken as it is, without waking it', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.pause('one');
    await host.manager.createSnapshot('one', 'snap');
    expect(host.manager.get('one').status).toBe('paused');
    expect(host.runtime.calls.filter((c) => c.startsWith('restore'))).toEqual([]);
  });
});

describe('flatten', () => {
  it('freezes a running sandbox for the copy and thaws it', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const gate = host.faults.hold('storage.copyTree');
    const flatten = host.manager.flattenRootfs('one', 'flat');
    await gate.reached;
    expect(host.runtime.sandboxes.get('one')?.frozen).toBe(true);
    expect(() => host.manager.connection('one')).toThrow(/it is flattening/);
    gate.release();
    await expect(flatten).resolves.toMatchObject({ kind: 'image', name: 'flat' });
    expect(host.runtime.sandboxes.get('one')?.frozen).toBe(false);
    expect(host.manager.get('one').status).toBe('running');
    // What a sandbox's root made (setuid binaries too) is root's only on the host.
    expect((await stat(host.layout.templateDir('flat'))).mode & 0o777).toBe(0o700);
  });

  it('a caller that goes away mid-copy: the sandbox is thawed and the staged template removed', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const ac = new AbortController();
    const gate = host.faults.hold('storage.copyTree');
    const flatten = failure(host.manager.flattenRootfs('one', 'flat', ac.signal));
    await gate.reached;
    ac.abort(new ConnectError('the caller went away', Code.Canceled));
    gate.release();
    expect((await flatten)?.code).toBe(Code.Canceled);
    expect(host.runtime.sandboxes.get('one')?.frozen).toBe(false);
    expect(await staging()).toEqual([]);
    expect(host.manager.get('one').status).toBe('running');
    await expect(host.manager.pause('one')).resolves.toMatchObject({ status: 'paused' });
  });

  it('a freeze that fails leaves the sandbox running, not stuck flattening', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    host.faults.fail('runtime.freeze');
    await expect(host.manager.flattenRootfs('one', 'flat')).rejects.toThrow(/injected/);
    expect(() => host.manager.connection('one').done()).not.toThrow();
  });

  it('a paused sandbox is mounted for the copy and unmounted after, even when the copy fails', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.pause('one');
    host.faults.fail('storage.copyTree');
    await expect(host.manager.flattenRootfs('one', 'flat')).rejects.toThrow(/injected/);
    expect(held(host)).toEqual(NOTHING_HELD);
    await expect(host.manager.flattenRootfs('one', 'flat')).resolves.toMatchObject({ name: 'flat' });
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(host.manager.get('one').status).toBe('paused');
  });
});
