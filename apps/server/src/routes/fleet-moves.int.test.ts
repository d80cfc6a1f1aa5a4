import { describe, expect, it } from 'vitest';
import { hostagent } from '@wrenn/contracts';
import { pollUntil } from '@wrenn/core';
import { markStaleHosts } from '../services/fleet/host-monitor.js';
import { replicatePausedSandboxes } from '../services/fleet/paused-replicas.js';
import { describeOnBackends, testBackends, testLogger, useTestServer } from '../testing/api.js';
import { startFakeHost, withFakeHosts, type FakeHost } from '../testing/fake-host.js';

const backends = await testBackends();
const { RUNNING, PAUSED } = hostagent.SandboxStatus;

// Templates and paused sandboxes travelling between hosts, against fake agents over real mutual
// TLS (what they stream is opaque to the control plane; the real bytes are the e2e tests' part).
describeOnBackends('moving work between hosts', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, admin, user } = api;

  const withHosts = <T>(count: number, auth: Record<string, string>, fn: (hosts: FakeHost[]) => Promise<T>) =>
    withFakeHosts(api, count, auth, fn);
  /** Waits (up to `timeoutMs`) for `check` to hold; fails the test when it never does. */
  const until = async (check: () => unknown, timeoutMs = 10_000) =>
    expect(
      await pollUntil(async () => ((await check()) ? true : undefined), { timeoutMs, intervalMs: 20 }),
    ).toBe(true);
  const sandboxRow = (id: string) =>
    api.db.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const replicas = async (templateId: string) =>
    (
      await api.db
        .selectFrom('template_replicas')
        .select('host_id')
        .where('template_id', '=', templateId)
        .execute()
    )
      .map((r) => r.host_id)
      .sort();

  it('drains a host: a running sandbox is paused, moved and resumed elsewhere; the host takes nothing new until undrained', async () => {
    const root = await admin('moves-root1@example.com');
    const team = await user('moves-team1@example.com');
    await withHosts(2, root.auth, async ([h1, h2]) => {
      await api.db.updateTable('hosts').set({ draining: true }).where('id', '=', h2!.id).execute();
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      const id = made.body.id as string;
      expect(made.body.host_id).toBe(h1!.id);
      await api.db.updateTable('hosts').set({ draining: false }).where('id', '=', h2!.id).execute();

      const plain = await call('POST', `/v1/admin/hosts/${h1!.id}/drain`, { headers: team.auth });
      expect(plain.status).toBe(403);
      const drained = await call('POST', `/v1/admin/hosts/${h1!.id}/drain`, { headers: root.auth });
      expect(drained).toEqual({
        status: 200,
        body: { host_id: h1!.id, moved: [{ sandbox_id: id, host_id: h2!.id, resumed: true }], failed: [] },
      });
      expect(h2!.imported).toEqual([id]);
      expect(h2!.sandboxes.get(id)).toBe(RUNNING);
      expect(h1!.sandboxes.has(id)).toBe(false);
      expect(await sandboxRow(id)).toMatchObject({ host_id: h2!.id, status: 'running', moving_to: null });

      // Out of placement: new sandboxes go to h2 only, until undrained.
      const next = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      expect(next.body.host_id).toBe(h2!.id);
      const listed = await call('GET', '/v1/admin/hosts', { headers: root.auth });
      const h1View = (listed.body.hosts as { id: string; draining: boolean }[]).find((h) => h.id === h1!.id);
      expect(h1View?.draining).toBe(true);
      expect((await call('DELETE', `/v1/admin/hosts/${h1!.id}/drain`, { headers: root.auth })).status).toBe(
        204,
      );
      expect(
        (
          await call('POST', `/v1/admin/hosts/00000000-0000-4000-8000-000000000000/drain`, {
            headers: root.auth,
          })
        ).status,
      ).toBe(404);
    });
  });

  it('moves a paused sandbox on request; refuses a running one, its own host, and a host of another team', async () => {
    const root = await admin('moves-root2@example.com');
    const team = await user('moves-team2@example.com');
    const other = await user('moves-team2b@example.com');
    await withHosts(2, root.auth, async ([h1, h2]) => {
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      const id = made.body.id as string;
      const [home, away] = made.body.host_id === h1!.id ? [h1!, h2!] : [h2!, h1!];
      const move = (body: object) =>
        call('POST', `/v1/admin/sandboxes/${id}/move`, { body, headers: root.auth });
      expect(await move({})).toMatchObject({ status: 409, body: { code: 'failed_precondition' } });
      expect((await call('POST', `/v1/sandboxes/${id}/pause`, { headers: team.key })).status).toBe(200);
      expect(await move({ host_id: home.id })).toMatchObject({ status: 400 });
      expect((await move({ host_id: 'nope' })).status).toBe(400);

      // A BYOC host of another team is never a destination.
      await call('PUT', `/v1/admin/teams/${other.team.id}/byoc`, {
        body: { is_byoc: true },
        headers: root.auth,
      });
      const theirs = await startFakeHost(call, { auth: other.auth, teamId: other.team.id });
      try {
        await theirs.heartbeat();
        const refused = await move({ host_id: theirs.id });
        expect(refused).toMatchObject({
          status: 409,
          body: { code: 'failed_precondition', message: expect.stringMatching(/cannot take/) as string },
        });
        expect(theirs.imported).toEqual([]);
      } finally {
        await theirs.stop();
        await api.db.updateTable('hosts').set({ status: 'deleted' }).where('id', '=', theirs.id).execute();
      }

      expect(await move({ host_id: away.id })).toEqual({
        status: 200,
        body: { sandbox_id: id, host_id: away.id },
      });
      expect(away.sandboxes.get(id)).toBe(PAUSED);
      expect(home.destroyed).toContain(id);
      expect(await sandboxRow(id)).toMatchObject({ host_id: away.id, status: 'paused' });
      // Resumed where it now is.
      expect((await call('POST', `/v1/sandboxes/${id}/resume`, { body: {}, headers: team.key })).status).toBe(
        200,
      );
      expect(away.sandboxes.get(id)).toBe(RUNNING);
    });
  });

  it('leaves a sandbox that is moving alone in both hosts’ heartbeats', async () => {
    const root = await admin('moves-root3@example.com');
    const team = await user('moves-team3@example.com');
    await withHosts(2, root.auth, async ([h1, h2]) => {
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      const id = made.body.id as string;
      const [home, away] = made.body.host_id === h1!.id ? [h1!, h2!] : [h2!, h1!];
      await call('POST', `/v1/sandboxes/${id}/pause`, { headers: team.key });
      // Half-way: the target has its copy, the row still names the old host.
      await api.db
        .updateTable('sandboxes')
        .set({ moving_to: away.id, moving_since: new Date() })
        .where('id', '=', id)
        .execute();
      away.sandboxes.set(id, PAUSED);
      expect((await away.heartbeat()).status).toBe(200);
      expect((await home.heartbeat()).status).toBe(200);
      expect(away.destroyed).toEqual([]);
      expect(home.destroyed).toEqual([]);
      // Once the move is given up (its server died), the copy that is not the sandbox's goes.
      await api.db.updateTable('sandboxes').set({ moving_to: null }).where('id', '=', id).execute();
      await away.heartbeat();
      expect(away.destroyed).toEqual([id]);
      expect(home.sandboxes.get(id)).toBe(PAUSED);
    });
  });

  it('copies a snapshot to the host a sandbox from it goes to; deletes it on every host, a host that was down when it next reports in', async () => {
    const root = await admin('moves-root4@example.com');
    const team = await user('moves-team4@example.com');
    await withHosts(2, root.auth, async ([h1, h2]) => {
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      const source = made.body.host_id === h1!.id ? h1! : h2!;
      const other = source === h1 ? h2! : h1!;
      const snap = await call('POST', '/v1/snapshots', {
        body: { sandbox_id: made.body.id, name: 'travels' },
        headers: team.key,
      });
      expect(snap.status, JSON.stringify(snap.body)).toBe(201);
      const snapId = snap.body.id as string;
      const agentName = `snap-${snapId}`;
      expect(await replicas(snapId)).toEqual([source.id]);

      // The holder takes nothing new: the sandbox goes to the other host, and the files go first.
      await api.db.updateTable('hosts').set({ draining: true }).where('id', '=', source.id).execute();
      const fromSnap = await call('POST', '/v1/sandboxes', {
        body: { template: 'travels' },
        headers: team.key,
      });
      expect(fromSnap.status, JSON.stringify(fromSnap.body)).toBe(201);
      expect(fromSnap.body.host_id).toBe(other.id);
      expect(other.imported).toEqual([agentName]);
      expect(other.templates.get(agentName)).toEqual(source.templates.get(agentName));
      expect(await replicas(snapId)).toEqual([h1!.id, h2!.id].sort());
      // A second sandbox there copies nothing.
      await call('POST', '/v1/sandboxes', { body: { template: 'travels' }, headers: team.key });
      expect(other.imported).toEqual([agentName]);
      await api.db.updateTable('hosts').set({ draining: false }).where('id', '=', source.id).execute();

      // One holder is down when the snapshot is deleted: it gets the delete when it reports in.
      await api.db.updateTable('hosts').set({ status: 'unreachable' }).where('id', '=', other.id).execute();
      expect((await call('DELETE', `/v1/snapshots/${snapId}`, { headers: team.key })).status).toBe(204);
      expect(source.templates.has(agentName)).toBe(false);
      expect(other.templates.has(agentName)).toBe(true);
      expect((await other.heartbeat()).status).toBe(200);
      const cleanups = () =>
        api.db.selectFrom('host_cleanups').selectAll().where('host_id', '=', other.id).execute();
      await until(async () => (await cleanups()).length === 0);
      expect(other.templates.has(agentName)).toBe(false);
    });
  });

  it('resumes what an agent paused for want of supervision (PauseAll), and only that', async () => {
    const root = await admin('moves-root5@example.com');
    const team = await user('moves-team5@example.com');
    await withHosts(1, root.auth, async ([h]) => {
      const a = (await call('POST', '/v1/sandboxes', { body: {}, headers: team.key })).body.id as string;
      const b = (await call('POST', '/v1/sandboxes', { body: {}, headers: team.key })).body.id as string;
      await call('POST', `/v1/sandboxes/${b}/pause`, { headers: team.key });
      h!.sandboxes.set(a, PAUSED);
      await h!.heartbeat([
        { id: a, status: 'paused', paused_unsupervised: true },
        { id: b, status: 'paused' },
      ]);
      await until(() => h!.sandboxes.get(a) === RUNNING);
      await until(async () => (await sandboxRow(a)).status === 'running');
      expect(h!.sandboxes.get(b)).toBe(PAUSED);
      expect((await sandboxRow(b)).status).toBe('paused');
    });
  });

  it('deletes a team and its sandboxes, templates and hosts; only owners and admins may', async () => {
    const root = await admin('moves-root6@example.com');
    const team = await user('moves-team6@example.com');
    const member = await user('moves-member6@example.com');
    await call('POST', `/v1/teams/${team.team.id}/members`, {
      body: { email: 'moves-member6@example.com' },
      headers: team.auth,
    });
    await withHosts(1, root.auth, async ([h]) => {
      const id = (await call('POST', '/v1/sandboxes', { body: {}, headers: team.key })).body.id as string;
      const snap = await call('POST', '/v1/snapshots', {
        body: { sandbox_id: id, name: 'doomed' },
        headers: team.key,
      });
      expect(h!.templates.has(`snap-${snap.body.id as string}`)).toBe(true);
      expect((await call('DELETE', `/v1/teams/${team.team.id}`, { headers: member.auth })).status).toBe(403);
      expect((await call('DELETE', `/v1/teams/${team.team.id}`, { headers: team.auth })).status).toBe(204);
      expect(h!.destroyed).toContain(id);
      expect(h!.templates.size).toBe(0);
      const rows = await api.db
        .selectFrom('sandboxes')
        .select('id')
        .where('team_id', '=', team.team.id)
        .execute();
      expect(rows).toEqual([]);
      expect((await call('GET', '/v1/sandboxes', { headers: team.key })).status).toBe(401);
      expect((await call('DELETE', `/v1/teams/${team.team.id}`, { headers: root.auth })).status).toBe(404);
    });
  });

  describe('paused replicas: a lost host strands no paused work', () => {
    const replicate = () =>
      replicatePausedSandboxes(
        { db: api.db, hosts: api.fleet.directory, logger: testLogger },
        { afterSec: 0 },
      );
    const lose = async (hostId: string) => {
      await api.db
        .updateTable('hosts')
        .set({ last_heartbeat_at: new Date(Date.now() - 3_600_000) })
        .where('id', '=', hostId)
        .execute();
      expect(await markStaleHosts(api.db, 90, testLogger)).toEqual([hostId]);
    };
    async function pausedOn(hosts: FakeHost[], key: Record<string, string>) {
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: key });
      const id = made.body.id as string;
      const home = hosts.find((h) => h.id === made.body.host_id)!;
      expect((await call('POST', `/v1/sandboxes/${id}/pause`, { headers: key })).status).toBe(200);
      return { id, home, others: hosts.filter((h) => h !== home) };
    }

    it('copies a paused sandbox to a second host; when its host is lost, a resume runs it from the copy, and the returning host drops its own', async () => {
      const root = await admin('replica-root1@example.com');
      const team = await user('replica-team1@example.com');
      await withHosts(2, root.auth, async (hosts) => {
        const { id, home, others } = await pausedOn(hosts, team.key);
        const away = others[0]!;
        expect(await replicate()).toEqual([id]);
        expect(away.imported).toEqual([id]);
        expect(away.sandboxes.get(id)).toBe(PAUSED);
        expect(await sandboxRow(id)).toMatchObject({ host_id: home.id, replica_host_id: away.id });
        expect((await sandboxRow(id)).replica_at).not.toBeNull();
        // Kept by the host that holds it, copied once.
        expect((await away.heartbeat()).status).toBe(200);
        expect(away.destroyed).toEqual([]);
        expect(await replicate()).toEqual([]);

        await lose(home.id);
        expect((await call('GET', `/v1/sandboxes/${id}`, { headers: team.key })).body.status).toBe('missing');
        const resumed = await call('POST', `/v1/sandboxes/${id}/resume`, { body: {}, headers: team.key });
        expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
        expect(resumed.body).toMatchObject({ status: 'running', host_id: away.id });
        expect(away.sandboxes.get(id)).toBe(RUNNING);
        expect(await sandboxRow(id)).toMatchObject({
          host_id: away.id,
          replica_host_id: null,
          status: 'running',
        });

        // The lost host comes back still holding its copy: not the sandbox any more.
        expect((await home.heartbeat()).status).toBe(200);
        expect(home.destroyed).toEqual([id]);
        expect((await sandboxRow(id)).status).toBe('running');
      });
    });

    it('a resume at home or a destroy drops the copy; a missing sandbox without one answers 503', async () => {
      const root = await admin('replica-root2@example.com');
      const team = await user('replica-team2@example.com');
      await withHosts(2, root.auth, async (hosts) => {
        const { id, home, others } = await pausedOn(hosts, team.key);
        const away = others[0]!;
        expect(await replicate()).toEqual([id]);
        expect(
          (await call('POST', `/v1/sandboxes/${id}/resume`, { body: {}, headers: team.key })).status,
        ).toBe(200);
        expect(home.sandboxes.get(id)).toBe(RUNNING);
        expect(await sandboxRow(id)).toMatchObject({
          host_id: home.id,
          replica_host_id: null,
          replica_at: null,
        });
        await until(() => away.destroyed.includes(id));
        expect(away.sandboxes.has(id)).toBe(false);

        // Running when its host was lost: there is no copy to resume from.
        await lose(home.id);
        const refused = await call('POST', `/v1/sandboxes/${id}/resume`, { body: {}, headers: team.key });
        expect(refused).toMatchObject({
          status: 503,
          body: { code: 'unavailable', message: expect.stringMatching(/no whole copy/) as string },
        });
        expect((await sandboxRow(id)).status).toBe('missing');
        expect((await home.heartbeat()).status).toBe(200);
        expect((await sandboxRow(id)).status).toBe('running');

        await call('POST', `/v1/sandboxes/${id}/pause`, { headers: team.key });
        expect(await replicate()).toEqual([id]);
        expect((await call('DELETE', `/v1/sandboxes/${id}`, { headers: team.key })).status).toBe(204);
        await until(() => !away.sandboxes.has(id));
        expect(home.sandboxes.has(id)).toBe(false);
      });
    });

    it('a copy in flight gives way to a resume at home', async () => {
      const root = await admin('replica-root4@example.com');
      const team = await user('replica-team4@example.com');
      await withHosts(2, root.auth, async (hosts) => {
        const { id, home, others } = await pausedOn(hosts, team.key);
        // Never opened: only the watch's abort ends this export.
        home.exportGate = new Promise<void>(() => {});
        const pass = replicate();
        try {
          await until(async () => (await sandboxRow(id)).replica_host_id);
          const resumed = await call('POST', `/v1/sandboxes/${id}/resume`, { body: {}, headers: team.key });
          expect(resumed.status).toBe(200);
          expect(await pass).toEqual([]);
        } finally {
          home.exportGate = undefined;
        }
        // Cut off mid-way by the watch, not run to its end; nothing of it stays on the other host.
        await until(() => home.exportsCut.length, 5000);
        expect(home.exportsCut).toEqual([id]);
        expect(others[0]!.sandboxes.has(id)).toBe(false);
        expect(await sandboxRow(id)).toMatchObject({
          status: 'running',
          replica_host_id: null,
          replica_at: null,
        });
      });
    });

    it('a move waits for a copy in flight and then takes it, never two transfers at once', async () => {
      const root = await admin('replica-root5@example.com');
      const team = await user('replica-team5@example.com');
      await withHosts(2, root.auth, async (hosts) => {
        const { id, home, others } = await pausedOn(hosts, team.key);
        const away = others[0]!;
        let open = () => {};
        home.exportGate = new Promise<void>((r) => (open = r));
        const pass = replicate();
        await until(async () => (await sandboxRow(id)).replica_host_id);
        const move = call('POST', `/v1/admin/sandboxes/${id}/move`, { body: {}, headers: root.auth });
        await new Promise((r) => setTimeout(r, 300));
        expect(away.imported).toEqual([]);
        open();
        home.exportGate = undefined;
        expect(await pass).toEqual([id]);
        expect(await move).toEqual({ status: 200, body: { sandbox_id: id, host_id: away.id } });
        expect(away.imported).toEqual([id]);
        expect(home.sandboxes.has(id)).toBe(false);
      });
    });

    it('a move goes to the host of the copy without copying again; a copy on a host that is lost is made again elsewhere', async () => {
      const root = await admin('replica-root3@example.com');
      const team = await user('replica-team3@example.com');
      await withHosts(3, root.auth, async (hosts) => {
        const { id, home } = await pausedOn(hosts, team.key);
        expect(await replicate()).toEqual([id]);
        const first = (await sandboxRow(id)).replica_host_id!;
        await lose(first);
        expect(await replicate()).toEqual([]); // dropped this pass, copied the next
        expect(await replicate()).toEqual([id]);
        const second = (await sandboxRow(id)).replica_host_id!;
        expect([home.id, first]).not.toContain(second);

        const target = hosts.find((h) => h.id === second)!;
        const moved = await call('POST', `/v1/admin/sandboxes/${id}/move`, { body: {}, headers: root.auth });
        expect(moved).toEqual({ status: 200, body: { sandbox_id: id, host_id: second } });
        expect(target.imported).toEqual([id]);
        expect(home.destroyed).toContain(id);
        expect(await sandboxRow(id)).toMatchObject({ host_id: second, replica_host_id: null });
      });
    });
  });
});
