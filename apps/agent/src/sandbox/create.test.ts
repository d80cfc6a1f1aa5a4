import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import { BASE, fakeHost, held, NOTHING_HELD, type FakeHost } from '../testing/fakes.js';

let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
});
afterEach(() => host.cleanup());

describe('create', () => {
  it('ends running, holding one slot, one runtime, one mount and one envd client', async () => {
    const info = await host.manager.create({ ...BASE, id: 'one' });
    expect(info.status).toBe('running');
    expect(info.envdAddress).toBe('10.12.0.6:49983');
    expect(host.runtime.sandboxes.get('one')?.alive).toBe(true);
    expect(held(host)).toEqual({ runtimes: ['one'], netns: [1], slots: 1, mounts: 1, envdClients: 1 });
  });

  it('starts on every core and is held to its vCPUs once envd answers', async () => {
    const gate = host.faults.hold('envd.waitHealthy');
    const create = host.manager.create({ ...BASE, id: 'one', vcpus: 2 });
    await gate.reached;
    expect(host.runtime.cpuLimits.has('one')).toBe(false);
    gate.release();
    await create;
    expect(host.runtime.cpuLimits.get('one')).toBe(2);
  });

  it.each([
    'storage.create',
    'network.prepare',
    'runtime.create',
    'network.activate',
    'envd.waitHealthy',
    'envd.init',
    'runtime.limitCpu',
  ])('a failure at %s rolls everything back and leaves no sandbox', async (point) => {
    host.faults.fail(point);
    const err = await host.manager.create({ ...BASE, id: 'one' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).rawMessage).toBe(`create sandbox: injected failure at ${point}`);
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(existsSync(host.layout.sandboxDir('one'))).toBe(false);
    expect(host.manager.list()).toEqual([]);
    // The same id and the same slot work right after.
    await expect(host.manager.create({ ...BASE, id: 'one' })).resolves.toMatchObject({ status: 'running' });
  });

  it('a caller that goes away before the runtime starts leaves nothing', async () => {
    const ac = new AbortController();
    const gate = host.faults.hold('network.prepare');
    const creating = host.manager.create({ ...BASE, id: 'one' }, ac.signal).catch((e: unknown) => e);
    await gate.reached;
    expect(host.manager.get('one').status).toBe('pending');
    ac.abort(new ConnectError('the caller went away', Code.Canceled));
    gate.release();
    expect(((await creating) as ConnectError).code).toBe(Code.Canceled);
    expect(host.runtime.calls).toEqual([]);
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('refuses an id in use and a host at its maximum', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await expect(host.manager.create({ ...BASE, id: 'one' })).rejects.toMatchObject({
      code: Code.AlreadyExists,
    });
    for (let i = 0; i < 7; i++) await host.manager.create(BASE);
    await expect(host.manager.create(BASE)).rejects.toMatchObject({ code: Code.ResourceExhausted });
  });
});
