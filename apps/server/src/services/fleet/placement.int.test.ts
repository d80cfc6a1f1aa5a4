import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PlacementConfig } from '../../config.js';
import type { Db } from '../../db/database.js';
import { describeOnBackends, testBackends } from '../../testing/api.js';
import { insertSandboxRow } from '../../testing/rows.js';
import { placeSandbox } from './placement.js';

// Placement's arithmetic against a real database: over-commit, reserve, paused sandboxes weighted
// for CPU and memory (fully for disk), stopped and missing ones not counted, the static host last.

const backends = await testBackends();
const config: PlacementConfig = {
  overcommit: { cpu: 2, memory: 1, disk: 1 },
  reserve: { cpu: 0, memoryMb: 1024, diskMb: 0 },
  pausedWeight: 0.5,
};

describeOnBackends('placement', backends, (backend) => {
  let db: Db;
  let teamId: string;
  const hosts: Record<'a' | 'b', string> = { a: '', b: '' };

  beforeAll(async () => {
    db = await backend.open();
    teamId = (await db.insertInto('teams').values({ name: 't' }).returning('id').executeTakeFirstOrThrow())
      .id;
    for (const name of ['a', 'b'] as const) {
      hosts[name] = (
        await db
          .insertInto('hosts')
          .values({ kind: 'platform', status: 'online', cpu_cores: 2, memory_mb: 4096, disk_mb: 500_000 })
          .returning('id')
          .executeTakeFirstOrThrow()
      ).id;
    }
    const row = (
      id: string,
      host: string,
      status: 'running' | 'paused' | 'stopped' | 'missing',
      memoryMb: number,
      diskMb: number,
    ) =>
      insertSandboxRow(db, {
        id,
        team_id: teamId,
        host_id: host,
        status,
        memory_mb: memoryMb,
        disk_mb: diskMb,
      });
    // a: 1536 MB running. b: 2 × 1024 MB paused (1024 at weight 0.5) on 40 GB of disk; 1 vCPU each.
    await row('placerun001', hosts.a, 'running', 1536, 1024);
    await row('placepau001', hosts.b, 'paused', 1024, 20_000);
    await row('placepau002', hosts.b, 'paused', 1024, 20_000);
    // Neither counts.
    await row('placestop01', hosts.a, 'stopped', 4096, 50_000);
    await row('placemiss01', hosts.a, 'missing', 4096, 50_000);
  }, 60_000);
  afterAll(() => db?.destroy());

  const need = (memoryMb: number, diskMb = 1024, vcpus = 1) => ({ vcpus, memoryMb, diskMb });

  it('weighs paused sandboxes for memory: b (2048 MB left) beats a (1536 MB left)', async () => {
    expect(await placeSandbox(db, config, teamId, need(512))).toBe(hosts.b);
  });

  it('counts a paused sandbox’s disk fully: 470 GB fits only on a', async () => {
    expect(await placeSandbox(db, config, teamId, need(512, 470_000))).toBe(hosts.a);
  });

  it('over-commits CPU by its factor, and names what ran out when nothing fits', async () => {
    // 2 cores × 2, one in use: 3 more fit (more than the host has), 4 do not.
    expect(await placeSandbox(db, config, teamId, need(512, 1024, 3))).toBeDefined();
    await expect(placeSandbox(db, config, teamId, need(512, 1024, 4))).rejects.toMatchObject({
      status: 503,
      message: 'no host can take the sandbox: not enough cpu on 2 hosts',
    });
    await expect(placeSandbox(db, config, teamId, need(2049))).rejects.toMatchObject({
      message: 'no host can take the sandbox: not enough memory on 2 hosts',
    });
  });

  it('prefers a host that holds the snapshot when it fits, skips excluded and draining hosts', async () => {
    // b is the least loaded; a fits too.
    expect(await placeSandbox(db, config, teamId, need(512))).toBe(hosts.b);
    expect(await placeSandbox(db, config, teamId, need(512), { prefer: [hosts.a] })).toBe(hosts.a);
    // A preferred host that does not fit is passed over.
    expect(await placeSandbox(db, config, teamId, need(1600), { prefer: [hosts.a] })).toBe(hosts.b);
    expect(await placeSandbox(db, config, teamId, need(512), { exclude: [hosts.b] })).toBe(hosts.a);
    await db.updateTable('hosts').set({ draining: true }).where('id', '=', hosts.b).execute();
    try {
      expect(await placeSandbox(db, config, teamId, need(512))).toBe(hosts.a);
      await expect(placeSandbox(db, config, teamId, need(512), { exclude: [hosts.a] })).rejects.toMatchObject(
        {
          status: 503,
        },
      );
    } finally {
      await db.updateTable('hosts').set({ draining: false }).where('id', '=', hosts.b).execute();
    }
  });

  it('uses a host of unknown capacity (the static host) only when no other fits', async () => {
    const statik = (
      await db
        .insertInto('hosts')
        .values({ kind: 'platform', status: 'online', is_static: true, address: 'http://127.0.0.1:9' })
        .returning('id')
        .executeTakeFirstOrThrow()
    ).id;
    expect(await placeSandbox(db, config, teamId, need(512))).toBe(hosts.b);
    expect(await placeSandbox(db, config, teamId, need(512, 1024, 4))).toBe(statik);
  });
});
