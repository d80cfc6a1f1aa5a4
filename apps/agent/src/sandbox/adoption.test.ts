import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlotAllocator } from '../network/slot-allocator.js';
import { sandboxPaths } from '../storage/layout.js';
import { BASE, fakeHost, type FakeHost } from '../testing/fakes.js';
import { SandboxManager } from './manager.js';
import { readSandboxState } from './record.js';

let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
});
afterEach(() => host.cleanup());

/**
 * The next agent on the same host: the runtime, namespaces, mounts and envds the first one left are
 * still there (the fakes are shared); its registry and slot allocator start empty.
 */
function nextAgent(): { manager: SandboxManager; slots: SlotAllocator } {
  const slots = new SlotAllocator(8);
  const manager = new SandboxManager({ ...host.deps, slots });
  return { manager, slots };
}

// The janitor's part: what no adopted sandbox keeps goes.
const recover = (manager: SandboxManager) =>
  manager.recoverAfterRestart(async (kept) => {
    await host.runtime.removeLeftovers(kept.runtimeIds);
    for (const index of [...host.network.prepared])
      if (!kept.slots.has(index)) host.network.prepared.delete(index);
  });

async function intent(id: string, op: string, more: Record<string, unknown> = {}) {
  await writeFile(
    sandboxPaths(host.layout, id).operationFile,
    JSON.stringify({ op, startedAt: '', ...more }),
  );
}

describe('a restarted agent takes over the sandboxes of the one before', () => {
  it('adopts a running sandbox where it runs, its slot kept from new sandboxes', async () => {
    const before = await host.manager.create({ ...BASE, id: 'one', metadata: { a: 'b' }, timeoutSec: 60 });
    const { manager, slots } = nextAgent();
    const report = await recover(manager);
    expect(report).toMatchObject({ running: ['one'], paused: [], stopped: [] });
    expect(manager.get('one')).toMatchObject({
      status: 'running',
      envdAddress: before.envdAddress,
      metadata: { a: 'b' },
      timeoutSec: 60,
    });
    expect(slots.inUse).toBe(1);
    expect(host.runtime.calls.filter((c) => c.startsWith('restore'))).toEqual([]);
    // Limited again: the agent before may have died between its start and its CPU limit.
    expect(host.runtime.calls.filter((c) => c === 'limitCpu one 1')).toHaveLength(2);
    // Its calls work; a new sandbox gets another slot.
    manager.connection('one').done();
    const two = await manager.create({ ...BASE, id: 'two' });
    expect(two.envdAddress).not.toBe(before.envdAddress);
  });

  it('marks a running sandbox whose runtime died meanwhile stopped, with the reason', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    host.runtime.kill('one');
    const { manager, slots } = nextAgent();
    expect(await recover(manager)).toMatchObject({ running: [], stopped: ['one'] });
    expect(manager.get('one')).toMatchObject({ status: 'stopped' });
    expect(manager.get('one').statusReason).toMatch(/stopped while the agent was down: out of memory/);
    expect(slots.inUse).toBe(0);
    await manager.destroy('one');
  });

  it('a pause cut short before the save: the sandbox runs on, woken', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await intent('one', 'pause');
    const paths = sandboxPaths(host.layout, 'one');
    await mkdir(paths.checkpointPartial);
    const { manager } = nextAgent();
    expect(await recover(manager)).toMatchObject({ running: ['one'] });
    expect(host.runtime.calls).toContain('signal one SIGUSR1');
    expect(existsSync(paths.checkpointPartial)).toBe(false);
    expect(existsSync(paths.operationFile)).toBe(false);
  });

  it('a pause cut short after the sandbox saved itself and stopped: restored from the save', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await intent('one', 'pause');
    const paths = sandboxPaths(host.layout, 'one');
    await mkdir(paths.checkpointPartial);
    await writeFile(path.join(paths.checkpointPartial, 'checkpoint.img'), 'memory');
    host.runtime.kill('one');
    const { manager } = nextAgent();
    expect(await recover(manager)).toMatchObject({ running: ['one'] });
    expect(host.runtime.calls).toContain('restore one from checkpoint.partial');
    expect((await readSandboxState(paths))?.info.status).toBe('running');
  });

  it('a pause cut short after its checkpoint was complete: paused, the record finished', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await intent('one', 'pause');
    const paths = sandboxPaths(host.layout, 'one');
    await mkdir(paths.checkpoint);
    host.runtime.kill('one');
    const { manager } = nextAgent();
    expect(await recover(manager)).toMatchObject({ paused: ['one'] });
    expect((await readSandboxState(paths))?.info.status).toBe('paused');
    expect((await manager.resume('one')).status).toBe('running');
  });

  it('a snapshot of a running sandbox cut short after its save: running again, as before it', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.pause('one');
    await host.manager.ctx.registry.find('one').teardown;
    await intent('one', 'snapshot', { template: 'snap', resumeAfter: true });
    const { manager } = nextAgent();
    expect(await recover(manager)).toMatchObject({ running: ['one'], paused: [] });
    const paths = sandboxPaths(host.layout, 'one');
    expect((await readSandboxState(paths))?.info.status).toBe('running');
    expect(existsSync(paths.checkpoint)).toBe(false);
    expect(existsSync(paths.operationFile)).toBe(false);
    // One of a paused sandbox stays paused.
    await manager.pause('one');
    await manager.ctx.registry.find('one').teardown;
    await intent('one', 'snapshot', { template: 'snap', resumeAfter: false });
    const third = nextAgent();
    expect(await recover(third.manager)).toMatchObject({ running: [], paused: ['one'] });
  });

  it('a resume cut short after the restore: adopted running, the spent checkpoint dropped', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await host.manager.pause('one');
    const paths = sandboxPaths(host.layout, 'one');
    await intent('one', 'resume');
    // The restore ran (the runtime is up again in a slot), the agent died before recording it.
    await host.manager.resume('one');
    await intent('one', 'resume');
    await mkdir(paths.checkpoint);
    const { manager } = nextAgent();
    expect(await recover(manager)).toMatchObject({ running: ['one'] });
    expect(existsSync(paths.checkpoint)).toBe(false);
  });

  it('forgets a sandbox it has no record of (a create in flight)', async () => {
    await host.manager.create({ ...BASE, id: 'one' });
    await import('node:fs/promises').then((fs) => fs.rm(sandboxPaths(host.layout, 'one').stateFile));
    const { manager } = nextAgent();
    expect(await recover(manager)).toMatchObject({ running: [], paused: [], stopped: [] });
    expect(host.runtime.sandboxes.size).toBe(0);
  });
});
