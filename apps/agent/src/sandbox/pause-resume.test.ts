import { existsSync } from 'node:fs';
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

async function running(id = 'one') {
  await host.manager.create({ ...BASE, id });
  return { id, paths: sandboxPaths(host.layout, id), record: host.manager.ctx.registry.find(id) };
}

async function paused(id = 'one') {
  const sandbox = await running(id);
  await host.manager.pause(id);
  await sandbox.record.teardown;
  return sandbox;
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as ConnectError,
  );

describe('pause', () => {
  it('checkpoints, writes the paused state, and keeps only the layer', async () => {
    const { paths, record } = await running();
    const info = await host.manager.pause('one');
    expect(info).toMatchObject({ status: 'paused', autoPaused: false, envdAddress: '' });
    await record.teardown;
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(existsSync(paths.checkpoint)).toBe(true);
    expect(existsSync(paths.checkpointPartial)).toBe(false);
    expect(existsSync(paths.diskImage)).toBe(true);
    expect((await readPausedState(paths))?.info.status).toBe('paused');
  });

  it('pausing a paused sandbox changes nothing', async () => {
    await paused();
    await expect(host.manager.pause('one')).resolves.toMatchObject({ status: 'paused' });
    expect(host.runtime.calls.filter((c) => c.startsWith('checkpoint'))).toHaveLength(1);
  });

  it('envd is not quiesced; a restore wakes it with SIGUSR1 only when it is not listening', async () => {
    await running();
    await host.manager.pause('one');
    expect(host.runtime.calls.filter((c) => c.includes('SIGUSR2'))).toEqual([]);
    // A checkpoint of this agent kept envd's listening socket: nothing to wake.
    host.guest.listening = true;
    await host.manager.resume('one');
    expect(host.runtime.calls.filter((c) => c.includes('SIGUSR1'))).toEqual([]);
    // One an older agent took with envd quiesced.
    await host.manager.pause('one');
    host.guest.listening = false;
    await host.manager.resume('one');
    expect(host.runtime.calls.filter((c) => c.includes('SIGUSR1'))).toEqual(['signal one SIGUSR1']);
  });

  it('a checkpoint that fails while the sandbox keeps running: envd is woken, it stays running', async () => {
    const { paths } = await running();
    host.faults.fail('runtime.checkpoint');
    const err = await failure(host.manager.pause('one'));
    expect(err?.rawMessage).toBe(
      'pause sandbox one (it keeps running): injected failure at runtime.checkpoint',
    );
    expect(host.manager.get('one')).toMatchObject({ status: 'running', statusReason: '' });
    expect(host.runtime.calls).toContain('signal one SIGUSR1');
    expect(held(host)).toEqual(ONE_RUNNING);
    expect(existsSync(paths.checkpointPartial)).toBe(false);
    // And it pauses normally afterwards.
    await expect(host.manager.pause('one')).resolves.toMatchObject({ status: 'paused' });
  });

  it('a checkpoint that fails after the sandbox saved itself: restored from that image, running', async () => {
    const { paths } = await running();
    host.runtime.onCheckpointFailure = 'saves-and-stops';
    host.faults.fail('runtime.checkpoint');
    expect((await failure(host.manager.pause('one')))?.rawMessage).toMatch(/keeps running/);
    expect(host.runtime.calls).toContain('restore one from checkpoint.partial');
    expect(host.manager.get('one').status).toBe('running');
    expect(held(host)).toEqual(ONE_RUNNING);
    expect(existsSync(paths.checkpointPartial)).toBe(false);
  });

  it('when that restore fails too the sandbox is lost: stopped with the reason, nothing held', async () => {
    const { paths } = await running();
    host.runtime.onCheckpointFailure = 'saves-and-stops';
    host.faults.fail('runtime.checkpoint');
    host.faults.fail('runtime.restore');
    await failure(host.manager.pause('one'));
    expect(host.manager.get('one')).toMatchObject({
      status: 'stopped',
      statusReason: 'lost during a failed pause: injected failure at runtime.checkpoint',
    });
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(existsSync(paths.dir)).toBe(false);
    await host.manager.destroy('one');
    expect(host.manager.list()).toEqual([]);
  });

  // Bug: `record.pid ?? 0` reached kill(0, 0), which signals the agent's own process group and always
  // succeeds, so a sandbox with no known pid looked alive and recovery spun for five minutes.
  describe('recovery without a known pid asks the runtime instead of spinning', () => {
    it('a sandbox the runtime says is still running is woken', async () => {
      const { record } = await running();
      record.pid = undefined;
      host.faults.fail('runtime.checkpoint');
      await failure(host.manager.pause('one'));
      expect(host.manager.get('one').status).toBe('running');
      expect(host.runtime.calls).toContain('signal one SIGUSR1');
      // Woken where it was, not restored from a partial image as if it had stopped.
      expect(host.runtime.calls.filter((c) => c.startsWith('restore'))).toEqual([]);
      expect(held(host)).toEqual(ONE_RUNNING);
    }, 2000);

    it('a sandbox the runtime says has stopped is restored from what it saved', async () => {
      const { record } = await running();
      record.pid = undefined;
      host.runtime.onCheckpointFailure = 'saves-and-stops';
      host.faults.fail('runtime.checkpoint');
      await failure(host.manager.pause('one'));
      expect(host.runtime.calls).toContain('restore one from checkpoint.partial');
      expect(host.manager.get('one').status).toBe('running');
      expect(held(host)).toEqual(ONE_RUNNING);
    }, 2000);
  });

  it('refuses calls while it pauses, naming what it does', async () => {
    await running();
    const gate = host.faults.hold('runtime.checkpoint');
    const pausing = host.manager.pause('one');
    await gate.reached;
    expect(host.manager.get('one').status).toBe('running');
    expect(() => host.manager.connection('one')).toThrow(
      'cannot use sandbox one: it is pausing, not running',
    );
    expect(() => host.manager.ping('one')).toThrow(/it is pausing/);
    gate.release();
    await pausing;
  });

  it('a caller that went away while the pause waited its turn pauses nothing', async () => {
    await running();
    const gate = host.faults.hold('storage.copyDiskImage');
    const snapshot = host.manager.createSnapshot('one', 'snap');
    await gate.reached;
    const ac = new AbortController();
    const pause = failure(host.manager.pause('one', ac.signal));
    ac.abort(new ConnectError('the caller went away', Code.Canceled));
    gate.release();
    await snapshot;
    expect((await pause)?.code).toBe(Code.Canceled);
    expect(host.manager.get('one').status).toBe('running');
  });
});

describe('resume', () => {
  it('restores into a fresh slot, spends the checkpoint and records the sandbox running', async () => {
    const { paths } = await paused();
    const info = await host.manager.resume('one', { timeoutSec: 30 });
    expect(info).toMatchObject({ status: 'running', timeoutSec: 30, statusReason: '' });
    expect(held(host)).toEqual(ONE_RUNNING);
    expect(existsSync(paths.checkpoint)).toBe(false);
    expect((await readSandboxState(paths))?.info).toMatchObject({ status: 'running', timeoutSec: 30 });
    expect(existsSync(paths.operationFile)).toBe(false);
    // Its envd kept its token, variables and defaults: a resume has nothing to /init.
    expect(host.guest.clients.at(-1)?.inits).toEqual([]);
    // The restore ran on every core; the sandbox is held to its vCPUs again.
    expect(host.runtime.calls.slice(-1)).toEqual(['limitCpu one 1']);
  });

  it.each([
    'storage.mount',
    'network.prepare',
    'runtime.restore',
    'network.activate',
    'runtime.signal.SIGUSR1',
    'envd.waitHealthy',
    'runtime.limitCpu',
  ])(
    'a failure at %s leaves it paused with its checkpoint, nothing held, and a retry works',
    async (point) => {
      const { paths } = await paused();
      host.faults.fail(point);
      const err = await failure(host.manager.resume('one'));
      expect(err?.rawMessage).toBe(`resume sandbox one (it stays paused): injected failure at ${point}`);
      expect(host.manager.get('one')).toMatchObject({ status: 'paused', envdAddress: '' });
      expect(held(host)).toEqual(NOTHING_HELD);
      expect(existsSync(paths.checkpoint)).toBe(true);
      expect((await readPausedState(paths))?.info.status).toBe('paused');
      await expect(host.manager.resume('one')).resolves.toMatchObject({ status: 'running' });
      expect(held(host)).toEqual(ONE_RUNNING);
    },
  );

  it('keeps the reason an auto-pause gave when a resume fails', async () => {
    const { record } = await running();
    record.info.timeoutSec = 60;
    const { pauseSandbox } = await import('./pause-resume.js');
    await pauseSandbox(host.manager.ctx, 'one', { auto: true });
    host.faults.fail('runtime.restore');
    await failure(host.manager.resume('one'));
    expect(host.manager.get('one')).toMatchObject({
      status: 'paused',
      autoPaused: true,
      statusReason: 'paused after 60 s without activity',
    });
  });
});

describe('a slot whose namespace could not be removed', () => {
  it('stays out of use after the pause, and the resume removes it before taking a slot', async () => {
    const { record } = await running();
    host.faults.fail('network.release');
    await host.manager.pause('one');
    await record.teardown;
    expect(held(host)).toEqual({ ...NOTHING_HELD, netns: [1], slots: 1 });
    await expect(host.manager.resume('one')).resolves.toMatchObject({ status: 'running' });
    expect(held(host)).toEqual(ONE_RUNNING);
  });
});

describe('one sandbox, many calls', () => {
  it('runs pause, resume, pause and destroy one after another, in order of arrival', async () => {
    await running();
    const results = await Promise.all([
      host.manager.pause('one'),
      host.manager.resume('one'),
      host.manager.pause('one'),
      host.manager.destroy('one'),
    ]);
    expect(results.slice(0, 3).map((r) => r?.status)).toEqual(['paused', 'running', 'paused']);
    expect(host.runtime.calls.filter((c) => !c.startsWith('signal'))).toEqual([
      'create one',
      'limitCpu one 1',
      'checkpoint one',
      'restore one from checkpoint',
      'limitCpu one 1',
      'checkpoint one',
    ]);
    expect(host.manager.list()).toEqual([]);
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a failure of one queued operation does not stop the next', async () => {
    await running();
    host.faults.fail('runtime.checkpoint');
    const [pause, destroy] = await Promise.allSettled([
      host.manager.pause('one'),
      host.manager.destroy('one'),
    ]);
    expect(pause.status).toBe('rejected');
    expect(destroy.status).toBe('fulfilled');
    expect(held(host)).toEqual(NOTHING_HELD);
  });
});

describe('adoption after an agent restart', () => {
  it('a paused sandbox on disk is this agent’s again, and resumes', async () => {
    await paused();
    const next = await fakeHost(host.layout.root);
    expect(await next.manager.adoptPaused()).toEqual(['one']);
    expect(next.manager.get('one')).toMatchObject({ status: 'paused' });
    await expect(next.manager.resume('one')).resolves.toMatchObject({ status: 'running' });
  });
});
