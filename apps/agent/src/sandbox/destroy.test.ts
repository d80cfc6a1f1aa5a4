import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, type ConnectError } from '@wrenn/core';
import { sandboxPaths } from '../storage/layout.js';
import { reapDead } from '../services/watchdog.js';
import { BASE, fakeHost, held, NOTHING_HELD, type FakeHost } from '../testing/fakes.js';

let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
});
afterEach(() => host.cleanup());

describe('destroy', () => {
  it('removes a running sandbox and everything it holds', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const { stopped } = host.manager.connection('one');
    await host.manager.destroy('one');
    expect(host.manager.list()).toEqual([]);
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(existsSync(sandboxPaths(host.layout, 'one').dir)).toBe(false);
    // Calls in flight are told.
    expect((stopped.reason as ConnectError).rawMessage).toBe('sandbox one stopped: destroyed');
  });

  it('removes a paused sandbox, its checkpoint and its layer', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.pause('one');
    await host.manager.destroy('one');
    expect(host.manager.list()).toEqual([]);
    expect(existsSync(sandboxPaths(host.layout, 'one').dir)).toBe(false);
  });

  it.each(['runtime.destroy', 'network.release', 'storage.destroy'])(
    'a release step that fails (%s): the others still run, the sandbox is `error`, and a retry removes it',
    async (point) => {
      await host.manager.create({ ...BASE, id: 'one' });
      host.faults.fail(point);
      await expect(host.manager.destroy('one')).rejects.toThrow(
        /^\[internal\] releasing one left work undone: \w+: injected failure/,
      );
      expect(host.manager.get('one')).toMatchObject({ status: 'error' });
      expect(host.manager.get('one').statusReason).toMatch(/injected failure/);
      // A slot whose namespace is still there is not handed out again.
      expect(host.slots.inUse).toBe(point === 'network.release' ? 1 : 0);
      await host.manager.destroy('one');
      expect(host.manager.list()).toEqual([]);
      expect(held(host)).toEqual(NOTHING_HELD);
    },
  );

  it('refuses an unknown sandbox', async () => {
    await expect(host.manager.destroy('nope')).rejects.toMatchObject({ code: Code.NotFound });
  });

  it('at shutdown: running sandboxes go, paused ones stay on disk', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.create({ ...BASE, id: 'two' });
    await host.manager.pause('two');
    await host.manager.destroyAll();
    expect(host.manager.list().map((s) => s.id)).toEqual(['two']);
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(existsSync(sandboxPaths(host.layout, 'two').checkpoint)).toBe(true);
  });
});

describe('death of a sandbox', () => {
  it('the watchdog marks it stopped with the reason, frees it, and keeps the record until destroy', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    const { stopped } = host.manager.connection('one');
    host.runtime.kill('one');
    await reapDead(host.manager.ctx);
    const reason = 'out of memory: the sandbox went past its memory limit';
    expect(host.manager.get('one')).toMatchObject({ status: 'stopped', statusReason: reason });
    expect(held(host)).toEqual(NOTHING_HELD);
    expect((stopped.reason as ConnectError).rawMessage).toBe(`sandbox one stopped: ${reason}`);
    expect(() => host.manager.connection('one')).toThrow(`it is stopped, not running (${reason})`);
    await host.manager.destroy('one');
    expect(host.manager.list()).toEqual([]);
  });

  it('a failing call and the watchdog finding the same corpse release it once', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    host.runtime.kill('one');
    const [death] = await Promise.all([host.manager.deathOf('one', 0), reapDead(host.manager.ctx)]);
    expect(death?.rawMessage).toMatch(/^sandbox one stopped: out of memory/);
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(host.manager.get('one').status).toBe('stopped');
  });

  it('a destroy that arrives while it is being reaped waits for that release', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    host.runtime.kill('one');
    const gate = host.faults.hold('runtime.destroy');
    const reaping = reapDead(host.manager.ctx);
    await gate.reached;
    const destroying = host.manager.destroy('one');
    gate.release();
    await Promise.all([reaping, destroying]);
    expect(host.manager.list()).toEqual([]);
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('deathOf says nothing about a sandbox that is alive', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    expect(await host.manager.deathOf('one', 0)).toBeUndefined();
    expect(host.manager.get('one').status).toBe('running');
  });
});
