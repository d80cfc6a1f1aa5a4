import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '@wrenn/core';
import { BASE, fakeHost, held, NOTHING_HELD, type FakeHost } from '../testing/fakes.js';
import { SandboxManager } from './manager.js';
import { backoffMs, isPoolRuntimeId, poolRuntimeId, WarmPool, type PoolMembers } from './warm-pool.js';
import type { SandboxRecord } from './record.js';

let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
  host.manager.pool.quietMs = 0;
});
afterEach(() => host.cleanup());

/** Refills until the pool of `template` has `n` ready (each pass makes at most one). */
async function fill(template = 'base', n = 1) {
  for (let i = 0; i < n; i++) await host.manager.pool.refillOnce();
  expect(poolOf(template)?.ready).toBe(n);
}

const poolOf = (template: string) => host.manager.listWarmPools().find((p) => p.template === template);
const pooledRuntimes = () => [...host.runtime.sandboxes.keys()].filter(isPoolRuntimeId);

describe('warm pool', () => {
  it('fills to its size in the background; its sandboxes are nobody’s', async () => {
    await host.manager.setWarmPool('base', 2);
    await fill('base', 2);
    await host.manager.pool.refillOnce();
    expect(poolOf('base')).toMatchObject({
      size: 2,
      ready: 2,
      refills: 2,
      claims: 0,
      misses: 0,
      failures: 0,
    });
    expect(poolOf('base')?.sizes).toEqual({ vcpus: 1, memoryMb: 512, diskMb: 4096 });
    expect(host.manager.list()).toEqual([]);
    expect(pooledRuntimes()).toHaveLength(2);
    expect(held(host)).toMatchObject({ slots: 2, mounts: 2, envdClients: 2 });
    // Each ran one command before it counted as ready (the user's first one finds envd warm).
    expect(host.guest.warmUps).toBe(2);
  });

  it('a create of the template claims a ready sandbox and gives it the request’s identity', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    const [runtimeId] = pooledRuntimes();
    const pooledClient = host.guest.open[0]!;
    const info = await host.manager.create({
      ...BASE,
      id: 'claimed1',
      env: { WHO: 'claimed1' },
      metadata: { team: 't' },
      timeoutSec: 30,
    });
    expect(info).toMatchObject({ id: 'claimed1', status: 'running', template: 'base', timeoutSec: 30 });
    expect(info.metadata).toEqual({ team: 't' });
    expect(poolOf('base')).toMatchObject({ ready: 0, claims: 1, misses: 0 });
    // No new runtime: the pooled one serves, under its own runtime name.
    expect([...host.runtime.sandboxes.keys()]).toEqual([runtimeId]);
    expect(host.manager.ctx.registry.find('claimed1').runtimeId).toBe(runtimeId);
    // envd was re-keyed with the pooled token and the new sandbox's token and env.
    const token = host.manager.envdAccessToken('claimed1');
    expect(pooledClient.inits.at(-1)).toEqual({ envVars: { WHO: 'claimed1' }, accessToken: token });
    expect(pooledClient.token).not.toBe(token);
    expect(pooledClient.closed).toBe(true);
    expect(host.guest.open.map((c) => c.token)).toEqual([token]);
    expect(host.manager.list().map((s) => s.id)).toEqual(['claimed1']);
  });

  it('two claims get different sandboxes and different tokens', async () => {
    await host.manager.setWarmPool('base', 2);
    await fill('base', 2);
    await host.manager.create({ ...BASE, id: 'aaaaaaaa' });
    await host.manager.create({ ...BASE, id: 'bbbbbbbb' });
    const { registry } = host.manager.ctx;
    expect(registry.find('aaaaaaaa').runtimeId).not.toBe(registry.find('bbbbbbbb').runtimeId);
    expect(host.manager.envdAccessToken('aaaaaaaa')).not.toBe(host.manager.envdAccessToken('bbbbbbbb'));
    expect(poolOf('base')).toMatchObject({ ready: 0, claims: 2 });
  });

  it('other sizes, or an empty pool, are misses served the usual way', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    const other = await host.manager.create({ ...BASE, id: 'big', memoryMb: 1024 });
    expect(host.manager.ctx.registry.find('big').runtimeId).toBe('big');
    expect(other.memoryMb).toBe(1024);
    // Asking for the pool's sizes explicitly is a hit.
    await host.manager.create({ ...BASE, id: 'same', memoryMb: 512, vcpus: 1, diskMb: 4096 });
    await host.manager.create({ ...BASE, id: 'empty' });
    expect(poolOf('base')).toMatchObject({ claims: 1, misses: 2 });
    expect(
      host.manager
        .list()
        .map((s) => s.id)
        .sort(),
    ).toEqual(['big', 'empty', 'same']);
  });

  it('a cold create on a host full with pooled sandboxes takes the slot of one', async () => {
    await host.manager.setWarmPool('base', 2);
    await fill('base', 2);
    // The fake host runs at most 8: 6 sandboxes of other sizes (misses) and the 2 pooled fill it.
    for (let i = 0; i < 6; i++) await host.manager.create({ ...BASE, memoryMb: 1024 });
    expect(host.slots.inUse).toBe(8);
    await host.manager.create({ ...BASE, id: 'seventh', memoryMb: 1024 });
    expect(poolOf('base')?.ready).toBe(1);
    expect(host.manager.list()).toHaveLength(7);
    // A full host refills nothing.
    await host.manager.create({ ...BASE, id: 'eighth' });
    await host.manager.pool.refillOnce();
    expect(poolOf('base')).toMatchObject({ ready: 0, claims: 1 });
    expect(host.slots.inUse).toBe(8);
  });

  it('a template without a pool counts no misses', async () => {
    await host.manager.create(BASE);
    expect(host.manager.listWarmPools()).toEqual([]);
  });

  it('size 0 destroys every pooled sandbox before it answers', async () => {
    await host.manager.setWarmPool('base', 2);
    await fill('base', 2);
    const info = await host.manager.setWarmPool('base', 0);
    expect(info).toMatchObject({ size: 0, ready: 0 });
    expect(held(host)).toEqual(NOTHING_HELD);
    await host.manager.pool.refillOnce();
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('shrinking keeps the rest; stop destroys all', async () => {
    await host.manager.setWarmPool('base', 3);
    await fill('base', 3);
    await host.manager.setWarmPool('base', 1);
    expect(pooledRuntimes()).toHaveLength(1);
    await host.manager.pool.stop();
    expect(held(host)).toEqual(NOTHING_HELD);
    await host.manager.setWarmPool('base', 1);
    await host.manager.pool.refillOnce();
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a claimed sandbox pauses, resumes and is destroyed like any other, leaving nothing', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    const [runtimeId] = pooledRuntimes();
    await host.manager.create({ ...BASE, id: 'claimed1' });
    await host.manager.setWarmPool('base', 0);
    const paused = await host.manager.pause('claimed1');
    expect(paused.status).toBe('paused');
    await host.manager.ctx.registry.find('claimed1').teardown;
    expect(host.runtime.calls).toContain(`checkpoint ${runtimeId}`);
    const resumed = await host.manager.resume('claimed1');
    expect(resumed.status).toBe('running');
    expect(host.runtime.calls.slice(-2)).toEqual([`signal ${runtimeId} SIGUSR1`, `limitCpu ${runtimeId} 1`]);
    await host.manager.destroy('claimed1');
    expect(held(host)).toEqual(NOTHING_HELD);
    expect(existsSync(host.layout.sandboxDir(runtimeId!))).toBe(false);
  });

  it('a claimed sandbox can be snapshotted and flattened; sandboxes start from both', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    const [runtimeId] = pooledRuntimes();
    await host.manager.create({ ...BASE, id: 'claimed1' });
    await host.manager.setWarmPool('base', 0);
    const snap = await host.manager.createSnapshot('claimed1', 'fromclaim');
    expect(snap.kind).toBe('snapshot');
    expect(host.manager.get('claimed1').status).toBe('running');
    expect(host.runtime.calls).toContain(`checkpoint ${runtimeId}`);
    await host.manager.flattenRootfs('claimed1', 'flatclaim');
    expect(host.runtime.calls).toContain(`thaw ${runtimeId}`);
    const restored = await host.manager.create({
      template: 'fromclaim',
      env: {},
      metadata: {},
      timeoutSec: 0,
    });
    expect(restored.status).toBe('running');
    for (const id of ['claimed1', restored.id]) await host.manager.destroy(id);
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a claimed sandbox left paused is adopted by the next agent under its own id', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    await host.manager.create({ ...BASE, id: 'claimed1', metadata: { k: 'v' } });
    await host.manager.pause('claimed1');
    await host.manager.ctx.registry.find('claimed1').teardown;
    const next = new SandboxManager({ ...host.deps });
    expect(await next.adoptPaused()).toEqual(['claimed1']);
    expect(next.get('claimed1')).toMatchObject({ status: 'paused', metadata: { k: 'v' } });
    await next.resume('claimed1');
    await next.destroy('claimed1');
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a claimed sandbox, paused, moves to another host and arrives under its id', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    await host.manager.create({ ...BASE, id: 'claimed1' });
    await host.manager.setWarmPool('base', 0);
    await host.manager.pause('claimed1');
    const other = await fakeHost();
    try {
      const chunks = host.manager.exportSandbox('claimed1');
      let digest: unknown;
      const all: Uint8Array[] = [];
      for (;;) {
        const next = await chunks.next();
        if (next.done) {
          digest = next.value;
          break;
        }
        all.push(next.value);
      }
      const moved = await other.manager.importSandbox(
        'claimed1',
        (async function* () {
          for (const chunk of all) yield await Promise.resolve(chunk);
        })(),
        (received) => expect(received).toEqual(digest),
      );
      expect(moved).toMatchObject({ id: 'claimed1', status: 'paused' });
      expect(other.manager.ctx.registry.find('claimed1').runtimeId).toBe('claimed1');
      await other.manager.resume('claimed1');
      expect(other.runtime.sandboxes.has('claimed1')).toBe(true);
      await other.manager.destroy('claimed1');
      expect(held(other)).toEqual(NOTHING_HELD);
    } finally {
      await other.cleanup();
    }
    await host.manager.destroy('claimed1');
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a claim whose envd refuses is destroyed; the create boots instead', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    const [runtimeId] = pooledRuntimes();
    host.faults.fail('envd.init');
    const info = await host.manager.create({ ...BASE, id: 'one' });
    expect(info.status).toBe('running');
    expect(host.manager.ctx.registry.find('one').runtimeId).toBe('one');
    expect(host.runtime.sandboxes.has(runtimeId!)).toBe(false);
    expect(poolOf('base')).toMatchObject({ claims: 0, misses: 1, failures: 1 });
    expect(poolOf('base')?.lastError).toContain('injected failure at envd.init');
  });

  it('a pooled sandbox that died is not handed out', async () => {
    await host.manager.setWarmPool('base', 1);
    await fill();
    const [runtimeId] = pooledRuntimes();
    host.runtime.kill(runtimeId!);
    const info = await host.manager.create({ ...BASE, id: 'one' });
    expect(host.manager.ctx.registry.find(info.id).runtimeId).toBe('one');
    expect(poolOf('base')).toMatchObject({ claims: 0, misses: 1, failures: 1 });
    await host.manager.destroy('one');
    await host.manager.setWarmPool('base', 0);
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a failing refill leaves nothing and backs off', async () => {
    await host.manager.setWarmPool('missing', 1);
    await host.manager.pool.refillOnce();
    expect(poolOf('missing')).toMatchObject({ ready: 0, failures: 1, refills: 0 });
    expect(poolOf('missing')?.lastError).toMatch(/missing/);
    // Within the back-off nothing is tried.
    await host.manager.pool.refillOnce();
    expect(poolOf('missing')?.failures).toBe(1);

    await host.manager.setWarmPool('base', 1);
    host.faults.fail('runtime.create');
    await host.manager.pool.refillOnce();
    expect(poolOf('base')).toMatchObject({ ready: 0, failures: 1 });
    expect(held(host)).toEqual(NOTHING_HELD);

    await host.manager.setWarmPool('base', 1);
    host.faults.fail('guest.warmUp');
    await host.manager.pool.refillOnce();
    expect(poolOf('base')).toMatchObject({ ready: 0, failures: 2 });
    expect(held(host)).toEqual(NOTHING_HELD);
  });

  it('a create that needs the CPU cuts a refill short, and none starts while it runs', async () => {
    await host.manager.setWarmPool('base', 1);
    const gate = host.faults.hold('network.prepare');
    const refill = host.manager.pool.refillOnce();
    await gate.reached;
    const createGate = host.faults.hold('network.prepare');
    const creating = host.manager.create({ ...BASE, id: 'cold', memoryMb: 1024 });
    gate.release();
    await refill;
    // Cut short, not failed: no back-off, nothing left.
    expect(poolOf('base')).toMatchObject({ ready: 0, failures: 0 });
    await createGate.reached;
    await host.manager.pool.refillOnce();
    expect(pooledRuntimes()).toEqual([]);
    createGate.release();
    await creating;
    await fill();
  });

  it('a snapshot template’s pool restores from it, and goes when the template is deleted', async () => {
    await host.manager.create({ ...BASE, id: 'source' });
    await host.manager.createSnapshot('source', 'snap1');
    await host.manager.setWarmPool('snap1', 1);
    await fill('snap1');
    const [runtimeId] = pooledRuntimes();
    expect(host.runtime.calls).toContain(`restore ${runtimeId} from checkpoint`);
    await host.manager.deleteTemplate('snap1');
    expect(host.manager.listWarmPools().map((p) => p.template)).not.toContain('snap1');
    expect(pooledRuntimes()).toEqual([]);
    await host.manager.destroy('source');
    expect(held(host)).toEqual(NOTHING_HELD);
  });
});

describe('WarmPool bookkeeping', () => {
  const members = (): PoolMembers & { made: number; destroyed: number } => {
    const m = {
      made: 0,
      destroyed: 0,
      make: () => {
        m.made++;
        return Promise.resolve({
          record: { runtimeId: poolRuntimeId(), pid: 1 } as SandboxRecord,
          sizes: { vcpus: 1, memoryMb: 512, diskMb: 4096 },
        });
      },
      destroy: () => {
        m.destroyed++;
        return Promise.resolve();
      },
      alive: () => true,
    };
    return m;
  };

  it('refills only with room on the host, and only after a quiet spell', async () => {
    let now = 1_000_000;
    let room = 0;
    const m = members();
    const pool = new WarmPool(m, { room: () => room, logger: silentLogger(), quietMs: 500, now: () => now });
    await pool.setSize('base', 1);
    await pool.refillOnce();
    expect(m.made).toBe(0);
    room = 1;
    await pool.refillOnce();
    expect(m.made).toBe(1);
    await pool.setSize('base', 2);
    expect(pool.take('base', { vcpus: 1, memoryMb: 512, diskMb: 4096 })).toBeDefined();
    await pool.refillOnce();
    expect(m.made).toBe(1);
    now += 500;
    await pool.refillOnce();
    expect(m.made).toBe(2);
    const done = pool.demand();
    now += 10_000;
    await pool.refillOnce();
    expect(m.made).toBe(2);
    done();
    now += 500;
    await pool.refillOnce();
    expect(m.made).toBe(3);
  });

  it('refills the pool furthest below its size first', async () => {
    const made: string[] = [];
    const m = members();
    const pool = new WarmPool(
      {
        ...m,
        make: (template, signal) => {
          made.push(template);
          return m.make(template, signal);
        },
      },
      { room: () => 10, logger: silentLogger(), quietMs: 0 },
    );
    await pool.setSize('a', 1);
    await pool.setSize('b', 3);
    for (let i = 0; i < 4; i++) await pool.refillOnce();
    expect(made).toEqual(['b', 'b', 'a', 'b']);
  });

  it('evicts a ready member when a cold create needs the slot', async () => {
    const m = members();
    const pool = new WarmPool(m, { room: () => 10, logger: silentLogger(), quietMs: 0 });
    await pool.setSize('a', 2);
    await pool.refillOnce();
    await pool.refillOnce();
    expect(await pool.evictOne()).toBe(true);
    expect(pool.held).toBe(1);
    expect(m.destroyed).toBe(1);
  });

  it('backs off 1, 2, 4 … 60 s', () => {
    expect([1, 2, 3, 7, 8, 20].map(backoffMs)).toEqual([1000, 2000, 4000, 60_000, 60_000, 60_000]);
  });

  it('pool runtime ids are never sandbox ids', () => {
    expect(isPoolRuntimeId(poolRuntimeId())).toBe(true);
    expect(isPoolRuntimeId('abcdefgh12345678')).toBe(false);
  });
});
