import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { SignJWT, importPKCS8 } from 'jose';
import { expect, it } from 'vitest';
import { identityOf, isIssuedBy } from '@wrenn/pki';
import { markStaleHosts } from '../services/fleet/host-monitor.js';
import { openFleet } from '../services/fleet/fleet.js';
import {
  describeOnBackends,
  startTestServer,
  testBackends,
  testLogger,
  useTestServer,
} from '../testing/api.js';
import { startFakeHost, type FakeHost } from '../testing/fake-host.js';
import { insertSandboxRow } from '../testing/rows.js';
import { hostagent } from '@wrenn/contracts';
import { generateKeyPair } from '@wrenn/pki';

const backends = await testBackends();
const { RUNNING, PAUSED, STOPPED } = hostagent.SandboxStatus;

describeOnBackends('the fleet API', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, admin, user } = api;

  const hostRow = (id: string) =>
    api.db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  async function withHosts<T>(hosts: Promise<FakeHost>[], fn: (hosts: FakeHost[]) => Promise<T>): Promise<T> {
    const started = await Promise.all(hosts);
    try {
      return await fn(started);
    } finally {
      await Promise.all(started.map((h) => h.stop()));
      // Gone with the test: later tests place sandboxes only on their own hosts.
      const ids = started.map((h) => h.id);
      await api.db.updateTable('hosts').set({ status: 'deleted' }).where('id', 'in', ids).execute();
    }
  }

  it('adds a host with a token that works once, within its hour; registration gives a certificate naming the host', async () => {
    const plain = await user('fleet-plain@example.com');
    expect(await call('POST', '/v1/hosts', { body: {}, headers: plain.auth })).toMatchObject({
      status: 403,
      body: { code: 'permission_denied' },
    });
    const root = await admin('fleet-root1@example.com');
    const added = await call('POST', '/v1/hosts', { body: {}, headers: root.auth });
    expect(added.status).toBe(201);
    expect(added.body.host).toMatchObject({ kind: 'platform', status: 'pending', team_id: null });
    const token = added.body.registration_token as string;
    const keys = await generateKeyPair();
    const body = {
      registration_token: token,
      arch: 'x86_64',
      cpu_cores: 4,
      memory_mb: 8192,
      disk_mb: 100_000,
      address: '127.0.0.1:7443',
      public_key: keys.publicKeyPem,
      agent_version: '0.1.0',
    };
    const wrong = await call('POST', '/v1/hosts/register', {
      body: { ...body, registration_token: 'wrr_nope' },
    });
    expect(wrong).toMatchObject({ status: 401, body: { code: 'unauthenticated' } });
    const badKey = await call('POST', '/v1/hosts/register', { body: { ...body, public_key: 'not a key' } });
    expect(badKey).toMatchObject({ status: 400, body: { code: 'invalid_argument' } });
    expect(badKey.body.message).toMatch(/^public_key: /);
    const badAddress = await call('POST', '/v1/hosts/register', { body: { ...body, address: 'localhost' } });
    expect(badAddress.body.message).toMatch(/^address: /);

    const ok = await call('POST', '/v1/hosts/register', { body });
    expect(ok.status).toBe(200);
    const hostId = (added.body.host as { id: string }).id;
    expect(ok.body).toMatchObject({ host_id: hostId, heartbeat_interval_sec: 30 });
    const cert = ok.body.certificate as string;
    expect(identityOf(cert)).toEqual({ kind: 'host', hostId });
    expect(isIssuedBy(cert, ok.body.ca_certificate as string)).toBe(true);
    expect(await api.fleet.credentials.verifyJwt(ok.body.access_token as string)).toBe(hostId);
    expect(await hostRow(hostId)).toMatchObject({
      status: 'online',
      address: '127.0.0.1:7443',
      cpu_cores: 4,
    });

    const again = await call('POST', '/v1/hosts/register', { body });
    expect(again).toMatchObject({ status: 401, body: { code: 'unauthenticated' } });

    const late = await call('POST', '/v1/hosts', { body: {}, headers: root.auth });
    await api.db
      .updateTable('host_registration_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('host_id', '=', (late.body.host as { id: string }).id)
      .execute();
    const expired = await call('POST', '/v1/hosts/register', {
      body: { ...body, registration_token: late.body.registration_token },
    });
    expect(expired).toMatchObject({ status: 401, body: { code: 'unauthenticated' } });
    // Stored as a hash only.
    const stored = await api.db.selectFrom('host_registration_tokens').select('token_hash').execute();
    expect(JSON.stringify(stored)).not.toContain(token);
    // Without sandboxes, a delete needs no force.
    expect((await call('DELETE', `/v1/hosts/${hostId}`, { headers: root.auth })).status).toBe(204);
  });

  it('rotates refresh tokens issue-then-revoke: a server dying in between leaves the old one working; reuse revokes the family', async () => {
    const root = await admin('fleet-root2@example.com');
    await withHosts([startFakeHost(call, { auth: root.auth })], async ([host]) => {
      const r0 = host!.refreshToken;
      const first = await call('POST', '/v1/hosts/refresh', { body: { refresh_token: r0 } });
      expect(first.status).toBe(200);
      const r1 = first.body.refresh_token as string;
      expect(r1).not.toBe(r0);
      expect(identityOf(first.body.certificate as string)).toEqual({ kind: 'host', hostId: host!.id });
      expect(await api.fleet.credentials.verifyJwt(first.body.access_token as string)).toBe(host!.id);

      // The server dies after storing r2 and before marking r1 used: r1 still works.
      await expect(
        api.fleet.credentials.rotateRefreshToken(r1, { afterIssue: () => Promise.reject(new Error('died')) }),
      ).rejects.toThrow('died');
      const retried = await call('POST', '/v1/hosts/refresh', { body: { refresh_token: r1 } });
      expect(retried.status).toBe(200);
      const r3 = retried.body.refresh_token as string;

      // r0 was used: showing it again revokes every token of the family, r3 included.
      const reused = await call('POST', '/v1/hosts/refresh', { body: { refresh_token: r0 } });
      expect(reused).toMatchObject({ status: 401, body: { code: 'unauthenticated' } });
      expect(reused.body.message).toMatch(/family/);
      expect((await call('POST', '/v1/hosts/refresh', { body: { refresh_token: r3 } })).status).toBe(401);
      expect(
        (await call('POST', '/v1/hosts/refresh', { body: { refresh_token: 'wrh_unknown' } })).status,
      ).toBe(401);
    });
  });

  it('takes heartbeats with a valid host JWT only; the host is online with its capacity, load and counts', async () => {
    const root = await admin('fleet-root3@example.com');
    await withHosts([startFakeHost(call, { auth: root.auth })], async ([host]) => {
      host!.sandboxes.set('hbsandbox01', RUNNING);
      host!.sandboxes.set('hbsandbox02', PAUSED);
      await insertSandboxRow(api.db, {
        id: 'hbsandbox01',
        team_id: root.team.id,
        status: 'running',
        host_id: host!.id,
      });
      await insertSandboxRow(api.db, {
        id: 'hbsandbox02',
        team_id: root.team.id,
        status: 'paused',
        host_id: host!.id,
      });
      expect(await host!.heartbeat()).toEqual({ status: 200, body: { heartbeat_interval_sec: 30 } });

      const keyPem = api.fleet.credentials.keys.hostTokenKey.privateKeyPem;
      const expired = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256' })
        .setSubject(host!.id)
        .setIssuer('wrenn')
        .setAudience('wrenn-host')
        .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
        .sign(await importPKCS8(keyPem, 'ES256'));
      const other = await generateKeyPair();
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256' })
        .setSubject(host!.id)
        .setIssuer('wrenn')
        .setAudience('wrenn-host')
        .setExpirationTime('1h')
        .sign(await importPKCS8(other.privateKeyPem, 'ES256'));
      for (const token of [expired, forged, 'not.a.jwt']) {
        expect(await host!.heartbeat(undefined, token)).toMatchObject({
          status: 401,
          body: { code: 'unauthenticated' },
        });
      }
      const bad = await host!.heartbeat([{ id: 'hbsandbox01', status: 'sleeping' }]);
      expect(bad.status).toBe(400);
      expect(bad.body.message).toMatch(/^sandboxes\.0\.status: /);

      const listed = await call('GET', '/v1/admin/hosts', { headers: root.auth });
      const shown = (listed.body.hosts as { id: string }[]).find((h) => h.id === host!.id);
      expect(shown).toMatchObject({
        kind: 'platform',
        status: 'online',
        team_name: null,
        capacity: { cpu_cores: 8, memory_mb: 16_384, disk_mb: 200_000 },
        load: { cpu_pct: 12.5, memory_used_mb: 2048, disk_used_mb: 10_000 },
        running_count: 1,
        paused_count: 1,
        sandbox_count: 2,
      });
      // The static host (nothing listens on its port here) is asked, and does not answer.
      const statics = (listed.body.hosts as { is_static: boolean; status: string }[]).filter(
        (h) => h.is_static,
      );
      expect(statics).toMatchObject([
        { status: 'unreachable', kind: 'platform', address: 'http://127.0.0.1:9' },
      ]);
    });
  });

  it('marks a silent host unreachable and its sandboxes missing; when it returns, reconciles them from its list', async () => {
    const root = await admin('fleet-root4@example.com');
    await withHosts([startFakeHost(call, { auth: root.auth })], async ([host]) => {
      const h = host!;
      const row = (id: string, status: 'running' | 'paused' | 'stopped') =>
        insertSandboxRow(api.db, { id, team_id: root.team.id, status, host_id: h.id });
      await row('retrunning1', 'running');
      await row('retpaused01', 'paused');
      await row('retlost0001', 'running');
      await row('retstopped1', 'stopped');
      await api.db
        .updateTable('hosts')
        .set({ last_heartbeat_at: new Date(Date.now() - 3_600_000) })
        .where('id', '=', h.id)
        .execute();

      expect(await markStaleHosts(api.db, 90, testLogger)).toEqual([h.id]);
      expect((await hostRow(h.id)).status).toBe('unreachable');
      const statuses = async () =>
        Object.fromEntries(
          (
            await api.db
              .selectFrom('sandboxes')
              .select(['id', 'status'])
              .where('host_id', '=', h.id)
              .execute()
          ).map((r) => [r.id, r.status]),
        );
      expect(await statuses()).toEqual({
        retrunning1: 'missing',
        retpaused01: 'missing',
        retlost0001: 'missing',
        retstopped1: 'stopped',
      });
      // The static host never sends heartbeats and is never marked.
      const staticHost = await api.db
        .selectFrom('hosts')
        .select('status')
        .where('is_static', '=', true)
        .executeTakeFirst();
      expect(staticHost?.status).toBe('online');
      // Nothing more to mark on a second pass.
      expect(await markStaleHosts(api.db, 90, testLogger)).toEqual([]);

      // It comes back holding two of them, one the control plane thinks stopped, and one it never knew.
      h.sandboxes.set('retrunning1', RUNNING);
      h.sandboxes.set('retpaused01', PAUSED);
      h.sandboxes.set('retstopped1', STOPPED);
      h.sandboxes.set('retunknown1', RUNNING);
      expect((await h.heartbeat()).status).toBe(200);
      expect((await hostRow(h.id)).status).toBe('online');
      expect(await statuses()).toEqual({
        retrunning1: 'running',
        retpaused01: 'paused',
        retlost0001: 'stopped',
        retstopped1: 'stopped',
      });
      expect(h.destroyed.sort()).toEqual(['retstopped1', 'retunknown1']);
      expect([...h.sandboxes.keys()].sort()).toEqual(['retpaused01', 'retrunning1']);
    });
  });

  it('places sandboxes on the least-loaded platform host, BYOC teams only on their own hosts (and no one else there), 503 naming why', async () => {
    const root = await admin('fleet-root5@example.com');
    const a = await user('fleet-team-a@example.com');
    const b = await user('fleet-team-b@example.com');
    // The static host (a dead port here) would take what fits nowhere else; out of the way.
    await api.db.updateTable('hosts').set({ status: 'deleted' }).where('is_static', '=', true).execute();
    const small = { cpu_cores: 4, memory_mb: 4096, disk_mb: 100_000 };
    try {
      await withHosts(
        [
          startFakeHost(call, { auth: root.auth, capacity: small }),
          startFakeHost(call, { auth: root.auth, capacity: small }),
        ],
        async ([h1, h2]) => {
          const made: { id: string; host_id: string }[] = [];
          for (let i = 0; i < 4; i++) {
            const res = await call('POST', '/v1/sandboxes', {
              body: { memory_mb: 512, disk_mb: 1024 },
              headers: a.key,
            });
            expect(res.status, JSON.stringify(res.body)).toBe(201);
            made.push(res.body as { id: string; host_id: string });
          }
          const perHost = (id: string) => made.filter((s) => s.host_id === id).length;
          expect([perHost(h1!.id), perHost(h2!.id)]).toEqual([2, 2]);
          expect(h1!.created.length + h2!.created.length).toBe(4);
          const got = await call('GET', `/v1/sandboxes/${made[0]!.id}`, { headers: a.key });
          expect(got.body.host_id).toBe(made[0]!.host_id);

          // Nothing fits: 503 naming the resource (4096 MB − 1024 reserve − 1024 placed < 3000).
          const tooBig = await call('POST', '/v1/sandboxes', { body: { memory_mb: 3000 }, headers: a.key });
          expect(tooBig).toEqual({
            status: 503,
            body: {
              code: 'unavailable',
              message: 'no host can take the sandbox: not enough memory on 2 hosts',
            },
          });

          // Team B goes BYOC: no host of its own yet → 503; the platform's hosts are not for it.
          const byoc = await call('PUT', `/v1/admin/teams/${b.team.id}/byoc`, {
            body: { is_byoc: true },
            headers: root.auth,
          });
          expect(byoc).toEqual({
            status: 200,
            body: { id: b.team.id, name: expect.any(String) as string, is_byoc: true },
          });
          const none = await call('POST', '/v1/sandboxes', { body: {}, headers: b.key });
          expect(none.status).toBe(503);
          expect(none.body.message).toMatch(/none of the team's own hosts is online/);
          const teams = await call('GET', '/v1/teams', { headers: b.auth });
          expect(teams.body.teams).toMatchObject([{ id: b.team.id, is_byoc: true }]);

          await withHosts([startFakeHost(call, { auth: b.auth })], async ([hb]) => {
            expect((await hostRow(hb!.id)).team_id).toBe(b.team.id);
            for (let i = 0; i < 2; i++) {
              const res = await call('POST', '/v1/sandboxes', { body: {}, headers: b.key });
              expect(res.body.host_id).toBe(hb!.id);
            }
            // Team A, with B's roomy host online, still only on platform hosts.
            const res = await call('POST', '/v1/sandboxes', {
              body: { memory_mb: 256, disk_mb: 256 },
              headers: a.key,
            });
            expect([h1!.id, h2!.id]).toContain(res.body.host_id);
            expect(hb!.created).toHaveLength(2);

            // B sees its host; A sees none and cannot delete B's.
            const mine = await call('GET', '/v1/hosts', { headers: b.auth });
            expect((mine.body.hosts as { id: string }[]).map((h) => h.id)).toEqual([hb!.id]);
            expect(await call('GET', '/v1/hosts', { headers: a.auth })).toEqual({
              status: 200,
              body: { hosts: [] },
            });
            expect((await call('DELETE', `/v1/hosts/${hb!.id}`, { headers: a.auth })).status).toBe(404);
            const admins = await call('GET', '/v1/admin/hosts', { headers: root.auth });
            expect(
              (admins.body.hosts as { id: string; team_name: string | null }[]).find((h) => h.id === hb!.id),
            ).toMatchObject({
              team_name: "fleet-team-b@example.com's team",
            });
            await call('DELETE', `/v1/hosts/${hb!.id}?force=true`, { headers: b.auth });
          });
          for (const h of [h1!, h2!])
            await call('DELETE', `/v1/hosts/${h.id}?force=true`, { headers: root.auth });
        },
      );
    } finally {
      await api.db.updateTable('hosts').set({ status: 'online' }).where('is_static', '=', true).execute();
    }
  });

  it('deletes a host: 409 listing its sandboxes, unless forced, which destroys them and revokes its credentials', async () => {
    const root = await admin('fleet-root6@example.com');
    await withHosts([startFakeHost(call, { auth: root.auth })], async ([host]) => {
      const h = host!;
      await insertSandboxRow(api.db, {
        id: 'delsandbox1',
        team_id: root.team.id,
        status: 'running',
        host_id: h.id,
      });
      await insertSandboxRow(api.db, {
        id: 'delsandbox2',
        team_id: root.team.id,
        status: 'missing',
        host_id: h.id,
      });
      h.sandboxes.set('delsandbox1', RUNNING);
      const refused = await call('DELETE', `/v1/hosts/${h.id}`, { headers: root.auth });
      expect(refused.status).toBe(409);
      expect(refused.body).toMatchObject({
        code: 'failed_precondition',
        sandboxes: ['delsandbox1', 'delsandbox2'],
      });
      expect((await hostRow(h.id)).status).toBe('online');

      expect((await call('DELETE', `/v1/hosts/${h.id}?force=true`, { headers: root.auth })).status).toBe(204);
      expect(h.destroyed).toContain('delsandbox1');
      const rows = await api.db
        .selectFrom('sandboxes')
        .select(['status', 'status_reason'])
        .where('host_id', '=', h.id)
        .execute();
      expect(rows).toEqual([
        { status: 'stopped', status_reason: 'its host was deleted' },
        { status: 'stopped', status_reason: 'its host was deleted' },
      ]);
      expect((await hostRow(h.id)).status).toBe('deleted');
      expect(
        (await call('POST', '/v1/hosts/refresh', { body: { refresh_token: h.refreshToken } })).status,
      ).toBe(401);
      expect((await h.heartbeat()).status).toBe(401);
      const listed = await call('GET', '/v1/admin/hosts', { headers: root.auth });
      expect((listed.body.hosts as { id: string }[]).map((x) => x.id)).not.toContain(h.id);
      const withDeleted = await call('GET', '/v1/admin/hosts?deleted=true', { headers: root.auth });
      expect((withDeleted.body.hosts as { id: string }[]).map((x) => x.id)).toContain(h.id);
      expect((await call('DELETE', `/v1/hosts/${h.id}`, { headers: root.auth })).status).toBe(404);
      await expect(api.fleet.directory.agent(h.id)).rejects.toThrow(/deleted/);
    });
  });

  it('asks the static host for what it holds when listing it, and calls one that never answers unreachable after 2 s', async () => {
    const root = await admin('fleet-root7@example.com');
    const sessions = new Set<http2.ServerHttp2Session>();
    const fake = http2.createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.service(hostagent.HostAgentService, {
            listSandboxes: () =>
              create(hostagent.ListSandboxesResponseSchema, {
                sandboxes: [
                  create(hostagent.SandboxSchema, { id: 'x1', status: RUNNING }),
                  create(hostagent.SandboxSchema, { id: 'x2', status: PAUSED }),
                  create(hostagent.SandboxSchema, { id: 'x3', status: RUNNING }),
                ],
              }),
          }),
      }),
    );
    fake.on('session', (s) => sessions.add(s));
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const silentSockets = new Set<net.Socket>();
    const silent = net.createServer((s) => silentSockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = (server: http2.Http2Server | net.Server) =>
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // One static host per cluster: each server below names it at its own URL in turn.
    const listedBy = async (staticAgentUrl: string) => {
      const server = await startTestServer(api.db, {
        fleet: await openFleet(api.db, testLogger, { staticAgentUrl }),
      });
      try {
        const started = Date.now();
        const res = await server.call('GET', '/v1/admin/hosts', { headers: root.auth });
        const statics = (res.body.hosts as { is_static: boolean }[]).filter((h) => h.is_static);
        return { statics, ms: Date.now() - started };
      } finally {
        await server.stop();
      }
    };
    try {
      const answering = await listedBy(url(fake));
      expect(answering.statics).toMatchObject([
        { address: url(fake), status: 'online', running_count: 2, paused_count: 1 },
      ]);
      const quiet = await listedBy(url(silent));
      expect(quiet.statics).toMatchObject([{ address: url(silent), status: 'unreachable' }]);
      expect(quiet.ms).toBeLessThan(5000);
    } finally {
      await openFleet(api.db, testLogger, { staticAgentUrl: 'http://127.0.0.1:9' });
      for (const s of sessions) s.destroy();
      for (const s of silentSockets) s.destroy();
      await new Promise((r) => fake.close(r));
      await new Promise((r) => silent.close(r));
    }
  });
});
