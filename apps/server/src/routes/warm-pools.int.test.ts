import { expect, it } from 'vitest';
import { syncWarmPools } from '../services/fleet/warm-pools.js';
import { describeOnBackends, testBackends, testLogger, useTestServer } from '../testing/api.js';
import { withFakeHosts } from '../testing/fake-host.js';

const backends = await testBackends();

// The control plane's side of warm pools against fake agents over real mutual TLS (the pools
// themselves, with real gVisor, are the e2e tests' part: test/e2e/warm-pool.e2e.test.ts).
describeOnBackends('warm pools', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, admin, user } = api;
  const sync = () => syncWarmPools({ db: api.db, hosts: api.fleet.directory, logger: testLogger });
  const put = (template: string, body: unknown, headers: Record<string, string>) =>
    call('PUT', `/v1/admin/warm-pools/${template}`, { body, headers });

  it('keeps a platform template’s pool on every platform host: set, read with hit rate, restored after an agent restart, none on a draining host', async () => {
    const root = await admin('pools-root1@example.com');
    const team = await user('pools-team1@example.com');
    await withFakeHosts(api, 2, root.auth, async ([h1, h2]) => {
      expect((await put('base', { size: 2 }, team.auth)).status).toBe(403);
      const set = await put('base', { size: 2 }, root.auth);
      expect(set.status, JSON.stringify(set.body)).toBe(200);
      expect(set.body).toMatchObject({
        template: 'base',
        template_id: null,
        size: 2,
        ready: 4,
        hit_rate: null,
      });
      expect((set.body.hosts as { host_id: string }[]).map((h) => h.host_id).sort()).toEqual(
        [h1!.id, h2!.id].sort(),
      );
      expect(h1!.warmPools.get('base')).toBe(2);
      expect(h2!.warmPools.get('base')).toBe(2);

      for (const [template, body, field] of [
        ['base', { size: 65 }, 'size'],
        ['base', { size: -1 }, 'size'],
        ['base', { size: 1, extra: true }, 'extra'],
        ['Not_A_Name!', { size: 1 }, 'template'],
      ] as const) {
        const bad = await put(template, body, root.auth);
        expect(bad.status, JSON.stringify(bad.body)).toBe(400);
        expect(bad.body.message).toContain(field);
      }
      expect(await put('snap-0123', { size: 1 }, root.auth)).toMatchObject({ status: 400 });
      expect(await put('nosuch', { size: 1 }, root.auth)).toMatchObject({
        status: 404,
        body: { code: 'not_found' },
      });

      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      expect(made.status).toBe(201);
      await sync();
      const listed = await call('GET', '/v1/admin/warm-pools', { headers: root.auth });
      expect(listed.status).toBe(200);
      const pools = listed.body.pools as { template: string; claims: number; hit_rate: number }[];
      expect(pools.map((p) => p.template)).toEqual(['base']);
      expect(pools[0]).toMatchObject({ claims: 1, hit_rate: 1 });
      expect((await call('GET', '/v1/admin/warm-pools', { headers: team.auth })).status).toBe(403);

      // An agent that restarted forgot its pools; a host that drains keeps none.
      h1!.warmPools.clear();
      await api.db.updateTable('hosts').set({ draining: true }).where('id', '=', h2!.id).execute();
      await sync();
      expect(h1!.warmPools.get('base')).toBe(2);
      expect(h2!.warmPools.get('base')).toBe(0);
      await api.db.updateTable('hosts').set({ draining: false }).where('id', '=', h2!.id).execute();

      expect((await put('base', { size: 0 }, root.auth)).body).toMatchObject({ size: 0, ready: 0 });
      expect([h1!.warmPools.get('base'), h2!.warmPools.get('base')]).toEqual([0, 0]);
    });
  });

  it('keeps a team snapshot’s pool only where its files are; placement prefers a host with a pooled sandbox ready', async () => {
    const root = await admin('pools-root2@example.com');
    const team = await user('pools-team2@example.com');
    await withFakeHosts(api, 2, root.auth, async (hosts) => {
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      const source = hosts.find((h) => h.id === made.body.host_id)!;
      const other = hosts.find((h) => h !== source)!;
      const snap = await call('POST', '/v1/snapshots', {
        body: { sandbox_id: made.body.id, name: 'pooled' },
        headers: team.key,
      });
      const snapId = snap.body.id as string;
      const agentName = `snap-${snapId}`;
      const set = await put(snapId, { size: 1 }, root.auth);
      expect(set.status, JSON.stringify(set.body)).toBe(200);
      expect(set.body).toMatchObject({ template: agentName, template_id: snapId, size: 1, ready: 1 });
      expect(source.warmPools.get(agentName)).toBe(1);
      expect(other.warmPools.get(agentName) ?? 0).toBe(0);

      // Base pooled on `source` only (as the leader last read it): creates of base go there, though
      // `other` is emptier (without the pool it would get them).
      await put('base', { size: 1 }, root.auth);
      await api.db
        .updateTable('hosts')
        .set({ warm_pools: JSON.stringify([]) })
        .where('id', '=', other.id)
        .execute();
      for (let i = 0; i < 3; i++) {
        const next = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
        expect(next.body.host_id).toBe(source.id);
      }
      // Both pooled again: the emptier one.
      await sync();
      const plain = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      expect(plain.body.host_id).toBe(other.id);
      const fromSnap = await call('POST', '/v1/sandboxes', {
        body: { template: 'pooled' },
        headers: team.key,
      });
      expect(fromSnap.body.host_id).toBe(source.id);
      expect(source.claimed).toContain(agentName);

      // Deleted, the snapshot takes its pool with it.
      expect((await call('DELETE', `/v1/snapshots/${snapId}`, { headers: team.key })).status).toBe(204);
      const rows = await api.db.selectFrom('warm_pools').select('template').execute();
      expect(rows.map((r) => r.template)).toEqual(['base']);
      await put('base', { size: 0 }, root.auth);
    });
  });
});
