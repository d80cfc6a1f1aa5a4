import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { withFakeHosts } from '../testing/fake-host.js';
import { describeOnBackends, startTestServer, testBackends, useTestServer } from '../testing/api.js';
import { pruneAuthRecords, startAuditRetention } from './audit-retention.js';
import { testLogger } from '../testing/api.js';

const backends = await testBackends();

interface Entry {
  id: string;
  action: string;
  target: string | null;
  team_id: string | null;
  actor_user_id: string | null;
  actor_api_key_id: string | null;
  result: string;
  request_id: string | null;
  ip: string | null;
}

describeOnBackends('the audit log', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, admin, user } = api;

  const teamAudit = async (teamId: string, auth: Record<string, string>, query = '') => {
    const res = await call('GET', `/v1/teams/${teamId}/audit${query}`, { headers: auth });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body as { entries: Entry[]; next_before: string | null };
  };

  it('records every kind of action, with who, which team, what, the request id and address', async () => {
    const root = await admin('audit-root@example.com');
    const team = await user('audit-owner@example.com');
    const other = await user('audit-other@example.com');
    const keyId = (
      await api.db
        .selectFrom('api_keys')
        .select('id')
        .where('team_id', '=', team.team.id)
        .executeTakeFirstOrThrow()
    ).id;
    const t = team.team.id;
    const bearer = team.auth;
    const requestId = 'req-audit-1';

    // Team management (bearer), the member's own actions.
    const made = await call('POST', `/v1/teams/${t}/api-keys`, { body: { name: 'second' }, headers: bearer });
    expect(made.status).toBe(201);
    expect(
      (await call('DELETE', `/v1/teams/${t}/api-keys/${made.body.id as string}`, { headers: bearer })).status,
    ).toBe(204);
    expect(
      (
        await call('POST', `/v1/teams/${t}/members`, {
          body: { email: 'audit-other@example.com' },
          headers: bearer,
        })
      ).status,
    ).toBe(201);
    const role = await call('PATCH', `/v1/teams/${t}/members/${other.user.id}`, {
      body: { role: 'owner' },
      headers: bearer,
    });
    expect(role.status, JSON.stringify(role.body)).toBe(200);
    expect(
      (await call('DELETE', `/v1/teams/${t}/members/${other.user.id}`, { headers: bearer })).status,
    ).toBe(204);

    // Hosts, sandboxes and builds (API key), on fake agents over mutual TLS.
    await withFakeHosts(api, 1, root.auth, async ([host]) => {
      const created = await call('POST', '/v1/sandboxes', {
        body: {},
        headers: { ...team.key, 'x-request-id': requestId },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const id = created.body.id as string;
      for (const action of ['pause', 'resume'])
        expect((await call('POST', `/v1/sandboxes/${id}/${action}`, { headers: team.key })).status).toBe(200);
      const snap = await call('POST', '/v1/snapshots', {
        body: { sandbox_id: id, name: 'audited' },
        headers: team.key,
      });
      expect(snap.status, JSON.stringify(snap.body)).toBe(201);
      const snapGone = await call('DELETE', `/v1/snapshots/${snap.body.id as string}`, { headers: team.key });
      expect(snapGone.status, JSON.stringify(snapGone.body)).toBe(204);
      expect((await call('DELETE', `/v1/sandboxes/${id}`, { headers: team.key })).status).toBe(204);
      const pool = await call('PUT', '/v1/admin/warm-pools/base', { body: { size: 1 }, headers: root.auth });
      expect(pool.status, JSON.stringify(pool.body)).toBe(200);
      const drained = await call('POST', `/v1/admin/hosts/${host!.id}/drain`, { headers: root.auth });
      expect(drained.status, JSON.stringify(drained.body)).toBe(200);
      expect((await call('DELETE', `/v1/admin/hosts/${host!.id}/drain`, { headers: root.auth })).status).toBe(
        204,
      );
      const build = await call('POST', '/v1/builds', {
        headers: team.key,
        body: { template: 'audited-build', recipe: ['echo hi'] },
      });
      expect(build.status).toBe(202);
      expect(
        (await call('POST', `/v1/builds/${build.body.id as string}/cancel`, { headers: team.key })).status,
      ).toBe(200);
      const gone = await call('DELETE', `/v1/hosts/${host!.id}?force=true`, { headers: root.auth });
      expect(gone.status, JSON.stringify(gone.body)).toBe(204);
    });
    // Invites and an admin's change to a team.
    expect((await call('POST', '/v1/admin/invites', { body: {}, headers: root.auth })).status).toBe(201);
    expect(
      (await call('PUT', `/v1/admin/teams/${t}/byoc`, { body: { is_byoc: false }, headers: root.auth }))
        .status,
    ).toBe(200);

    const { entries } = await teamAudit(t, bearer, '?limit=500');
    const actions = entries.map((e) => e.action);
    for (const action of [
      'user.signup',
      'api_key.create',
      'api_key.revoke',
      'member.add',
      'member.role_change',
      'member.remove',
      'sandbox.create',
      'sandbox.pause',
      'sandbox.resume',
      'sandbox.snapshot',
      'sandbox.kill',
      'snapshot.delete',
      'build.start',
      'build.cancel',
      'admin.team_byoc',
    ])
      expect(actions, action).toContain(action);
    // Newest first.
    expect(entries.map((e) => Number(e.id))).toEqual(
      [...entries.map((e) => Number(e.id))].sort((a, b) => b - a),
    );

    const create = entries.find((e) => e.action === 'sandbox.create')!;
    expect(create).toMatchObject({
      team_id: t,
      actor_api_key_id: keyId,
      actor_user_id: null,
      result: 'ok',
      request_id: requestId,
      ip: '127.0.0.1',
    });
    expect(entries.find((e) => e.action === 'member.remove')).toMatchObject({
      actor_user_id: team.user.id,
      actor_api_key_id: null,
      target: other.user.id,
    });
    expect(entries.find((e) => e.action === 'admin.team_byoc')).toMatchObject({
      actor_user_id: root.user.id,
    });

    // A team deleted by its owner: the entry outlives the team.
    const doomed = await user('audit-doomed@example.com');
    expect((await call('DELETE', `/v1/teams/${doomed.team.id}`, { headers: doomed.auth })).status).toBe(204);

    // Platform actions (hosts, invites) are the admins' view.
    const all = await call('GET', '/v1/admin/audit?limit=500', { headers: root.auth });
    expect(all.status).toBe(200);
    const adminActions = (all.body.entries as Entry[]).map((e) => e.action);
    for (const action of [
      'host.create',
      'host.register',
      'host.drain',
      'host.delete',
      'invite.create',
      'admin.warm_pool',
      'host.undrain',
      'team.delete',
    ])
      expect(adminActions, action).toContain(action);
    expect(adminActions).toEqual(expect.arrayContaining(actions));
  });

  it('pages newest first by `before`, filters by action, and is for owners and admins only', async () => {
    const root = await admin('audit-root2@example.com');
    const owner = await user('audit-pager@example.com');
    const member = await user('audit-member@example.com');
    const outsider = await user('audit-outsider@example.com');
    const t = owner.team.id;
    await call('POST', `/v1/teams/${t}/members`, {
      body: { email: 'audit-member@example.com' },
      headers: owner.auth,
    });
    for (let i = 0; i < 5; i++)
      expect(
        (await call('POST', `/v1/teams/${t}/api-keys`, { body: { name: `k${i}` }, headers: owner.auth }))
          .status,
      ).toBe(201);
    // user() made one key too: six api_key.create in all.
    const seen: Entry[] = [];
    let before: string | null = '';
    let pages = 0;
    while (before !== null) {
      const page = await teamAudit(
        t,
        owner.auth,
        `?action=api_key.create&limit=4${before ? `&before=${before}` : ''}`,
      );
      seen.push(...page.entries);
      before = page.next_before;
      pages++;
    }
    expect(pages).toBe(2);
    expect(seen).toHaveLength(6);
    expect(new Set(seen.map((e) => e.action))).toEqual(new Set(['api_key.create']));
    expect(seen.map((e) => Number(e.id))).toEqual([...seen.map((e) => Number(e.id))].sort((a, b) => b - a));
    expect(new Set(seen.map((e) => e.id)).size).toBe(6);

    // A member is told which role it takes; another team's user does not see the team at all.
    const asMember = await call('GET', `/v1/teams/${t}/audit`, { headers: member.auth });
    expect(asMember).toEqual({
      status: 403,
      body: {
        code: 'permission_denied',
        message: 'only team owners (or platform admins) read the audit log; your role in this team is member',
      },
    });
    expect((await call('GET', `/v1/teams/${t}/audit`, { headers: outsider.auth })).status).toBe(404);
    expect((await call('GET', '/v1/admin/audit', { headers: owner.auth })).status).toBe(403);
    // An admin reads any team's, here or through /v1/admin/audit?team_id=.
    expect((await teamAudit(t, root.auth)).entries.length).toBeGreaterThan(0);
    const byTeam = await call('GET', `/v1/admin/audit?team_id=${t}&action=member.add`, {
      headers: root.auth,
    });
    expect((byTeam.body.entries as Entry[]).map((e) => [e.action, e.team_id])).toEqual([['member.add', t]]);
    expect((await call('GET', `/v1/teams/${t}/audit?action=no.such`, { headers: owner.auth })).status).toBe(
      400,
    );
    expect((await call('GET', `/v1/teams/${t}/audit?limit=0`, { headers: owner.auth })).status).toBe(400);
  });

  it('prunes entries past the retention, in the leader’s pass only', async () => {
    const owner = await user('audit-retention@example.com');
    const t = owner.team.id;
    const count = async () =>
      Number(
        (
          await api.db
            .selectFrom('audit_log')
            .select(api.db.fn.countAll().as('n'))
            .where('team_id', '=', t)
            .executeTakeFirstOrThrow()
        ).n,
      );
    const before = await count();
    expect(before).toBeGreaterThan(1);
    // Two entries made old: 91 days, and 89 (kept under the default 90).
    const ids = (
      await api.db
        .selectFrom('audit_log')
        .select('id')
        .where('team_id', '=', t)
        .orderBy('id')
        .limit(2)
        .execute()
    ).map((r) => r.id);
    await sql`update audit_log set at = now() - interval '91 days' where id = ${ids[0]}`.execute(api.db);
    await sql`update audit_log set at = now() - interval '89 days' where id = ${ids[1]}`.execute(api.db);

    // A follower's pass does nothing.
    const follower = startAuditRetention(api.db, testLogger, {
      retentionDays: 90,
      intervalMs: 20,
      isLeader: () => false,
    });
    await new Promise((r) => setTimeout(r, 200));
    await follower.stop();
    expect(await count()).toBe(before);

    const leader = startAuditRetention(api.db, testLogger, {
      retentionDays: 90,
      intervalMs: 20,
      isLeader: () => true,
    });
    await expect.poll(count, { timeout: 10_000 }).toBe(before - 1);
    await leader.stop();
    // A shorter retention takes the other one too.
    expect((await pruneAuthRecords(api.db, 30)).auditEntries).toBeGreaterThanOrEqual(1);
    expect(await count()).toBe(before - 2);
  });

  it('keeps the audit log across servers on one database (another server reads what one wrote)', async () => {
    const owner = await user('audit-replica@example.com');
    const second = await startTestServer(api.db);
    try {
      const made = await second.call('POST', `/v1/teams/${owner.team.id}/api-keys`, {
        body: { name: 'via-second' },
        headers: owner.auth,
      });
      expect(made.status).toBe(201);
      const { entries } = await teamAudit(owner.team.id, owner.auth, '?action=api_key.create');
      expect(entries.map((e) => e.target)).toContain(made.body.id);
    } finally {
      await second.stop();
    }
  });
});
