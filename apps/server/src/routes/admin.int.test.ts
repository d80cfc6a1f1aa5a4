import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';
import { insertSandboxRow } from '../testing/rows.js';

const backends = await testBackends();
const ADMIN_PATHS = [
  '/v1/admin/teams',
  '/v1/admin/sandboxes',
  '/v1/admin/templates',
  '/v1/admin/hosts',
  '/v1/admin/users',
  '/v1/admin/builds',
  '/v1/admin/audit',
];

describeOnBackends('the admin API', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, signup, admin } = api;

  const sandbox = (id: string, team_id: string, status: 'running' | 'paused' | 'stopped') =>
    insertSandboxRow(api.db, { id, team_id, status, metadata: { owner: team_id.slice(0, 8) } });

  it('answers 401 without a token and 403 to a user who is not an admin, checking the flag on every request', async () => {
    const user = await signup('plain-user@example.com');
    const asUser = { authorization: `Bearer ${user.token}` };
    for (const path of ADMIN_PATHS) {
      const anonymous = await call('GET', path);
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.body.code, path).toBe('unauthenticated');
      expect(await call('GET', path, { headers: asUser }), path).toEqual({
        status: 403,
        body: { code: 'permission_denied', message: 'only administrators may use /v1/admin' },
      });
    }

    // Made admin: the same token works at once; the flag taken away: refused at once.
    await api.db.updateTable('users').set({ is_admin: true }).where('id', '=', user.user.id).execute();
    for (const path of ADMIN_PATHS) {
      expect((await call('GET', path, { headers: asUser })).status, path).toBe(200);
    }
    await api.db.updateTable('users').set({ is_admin: false }).where('id', '=', user.user.id).execute();
    expect((await call('GET', '/v1/admin/teams', { headers: asUser })).status).toBe(403);
  });

  it('lists every user by email, a page at a time, with admin flag and team count', async () => {
    const root = await admin('aa-users-root@example.com');
    const owner = await signup('ab-users-owner@example.com');
    await signup('ac-users-plain@example.com');
    const added = await call('POST', `/v1/teams/${owner.team.id}/members`, {
      body: { email: 'aa-users-root@example.com' },
      headers: { authorization: `Bearer ${owner.token}` },
    });
    expect(added.status).toBe(201);

    const first = await call('GET', '/v1/admin/users?limit=2', { headers: root.auth });
    expect(first.status).toBe(200);
    const emails = (page: Record<string, unknown>) => (page.users as { email: string }[]).map((u) => u.email);
    expect(emails(first.body)).toHaveLength(2);
    const all: string[] = [...emails(first.body)];
    let next = first.body.next_after as string | null;
    expect(next).toBe(all[1]);
    while (next) {
      const page = await call('GET', `/v1/admin/users?limit=2&after=${encodeURIComponent(next)}`, {
        headers: root.auth,
      });
      expect(page.status).toBe(200);
      all.push(...emails(page.body));
      next = page.body.next_after as string | null;
    }
    // Every user once, in order (no page repeats or skips one).
    expect(all).toEqual([...all].sort());
    expect(new Set(all).size).toBe(all.length);
    for (const email of [
      'aa-users-root@example.com',
      'ab-users-owner@example.com',
      'ac-users-plain@example.com',
    ])
      expect(all).toContain(email);

    const everyone = await call('GET', '/v1/admin/users?limit=500', { headers: root.auth });
    expect(everyone.body.next_after).toBeNull();
    const rootRow = (everyone.body.users as { email: string }[]).find(
      (u) => u.email === 'aa-users-root@example.com',
    );
    expect(rootRow).toEqual({
      id: root.user.id,
      email: 'aa-users-root@example.com',
      is_admin: true,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
      team_count: 2,
    });
    expect(
      (everyone.body.users as { email: string }[]).find((u) => u.email === 'ac-users-plain@example.com'),
    ).toMatchObject({ is_admin: false, team_count: 1 });

    const bad = await call('GET', '/v1/admin/users?limit=0', { headers: root.auth });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^limit: /);
  });

  it("lists every team with its member and live sandbox counts, and every team's sandboxes", async () => {
    const root = await admin('root-lists@example.com');
    const a = await signup('admin-team-a@example.com');
    const b = await signup('admin-team-b@example.com');
    const added = await call('POST', `/v1/teams/${a.team.id}/members`, {
      body: { email: 'admin-team-b@example.com' },
      headers: { authorization: `Bearer ${a.token}` },
    });
    expect(added.status).toBe(201);
    await sandbox('adminsbxa001', a.team.id, 'running');
    await sandbox('adminsbxa002', a.team.id, 'paused');
    await sandbox('adminsbxa003', a.team.id, 'stopped');
    await sandbox('adminsbxb001', b.team.id, 'running');

    const teams = await call('GET', '/v1/admin/teams', { headers: root.auth });
    expect(teams.status).toBe(200);
    const byId = new Map((teams.body.teams as { id: string }[]).map((t) => [t.id, t]));
    expect(byId.get(a.team.id)).toEqual({
      id: a.team.id,
      name: "admin-team-a@example.com's team",
      is_byoc: false,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
      member_count: 2,
      sandbox_count: 2,
    });
    expect(byId.get(b.team.id)).toMatchObject({ member_count: 1, sandbox_count: 1 });
    expect(byId.get(root.team.id)).toMatchObject({ member_count: 1, sandbox_count: 0 });

    const listed = await call('GET', '/v1/admin/sandboxes', { headers: root.auth });
    expect(listed.status).toBe(200);
    const sandboxes = listed.body.sandboxes as { id: string; team_id: string }[];
    expect(sandboxes.map((s) => s.id).sort()).toEqual(['adminsbxa001', 'adminsbxa002', 'adminsbxb001']);
    expect(sandboxes.find((s) => s.id === 'adminsbxa001')).toEqual({
      id: 'adminsbxa001',
      team_id: a.team.id,
      template: 'base',
      status: 'running',
      vcpus: 1,
      memory_mb: 512,
      disk_mb: 1024,
      timeout_sec: 300,
      metadata: { owner: a.team.id.slice(0, 8) },
      status_reason: '',
      auto_paused: false,
      host_id: null,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
      network: { allow_internet: null, allow_out: [], deny_out: [], allow_public_traffic: true },
      oom_kills: 0,
      last_oom_kill: null,
    });

    const stopped = await call('GET', '/v1/admin/sandboxes?status=stopped', { headers: root.auth });
    expect((stopped.body.sandboxes as { id: string }[]).map((s) => s.id)).toEqual(['adminsbxa003']);
    const ofB = await call('GET', `/v1/admin/sandboxes?team_id=${b.team.id}`, { headers: root.auth });
    expect((ofB.body.sandboxes as { id: string }[]).map((s) => s.id)).toEqual(['adminsbxb001']);
    const bad = await call('GET', '/v1/admin/sandboxes?status=sleeping', { headers: root.auth });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^status: /);
  });

  it("lists every template: the platform's (team_id null) and teams' snapshots", async () => {
    const root = await admin('root-templates@example.com');
    const team = await signup('snapshotter@example.com');
    await api.db
      .insertInto('templates')
      .values([
        {
          team_id: null,
          name: 'admin-test-image',
          kind: 'image',
          vcpus: 1,
          memory_mb: 512,
          disk_mb: 2048,
          size_bytes: 0,
        },
        {
          team_id: team.team.id,
          name: 'admin-test-snap',
          kind: 'snapshot',
          source_sandbox_id: 'adminsbxsrc1',
          vcpus: 2,
          memory_mb: 1024,
          disk_mb: 4096,
          size_bytes: 5_000_000_000,
        },
      ])
      .execute();
    const res = await call('GET', '/v1/admin/templates', { headers: root.auth });
    expect(res.status).toBe(200);
    const templates = res.body.templates as { name: string }[];
    expect(templates.find((t) => t.name === 'admin-test-image')).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/) as string,
      team_id: null,
      name: 'admin-test-image',
      kind: 'image',
      source_sandbox_id: null,
      vcpus: 1,
      memory_mb: 512,
      disk_mb: 2048,
      size_bytes: 0,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
    });
    expect(templates.find((t) => t.name === 'admin-test-snap')).toMatchObject({
      team_id: team.team.id,
      kind: 'snapshot',
      source_sandbox_id: 'adminsbxsrc1',
      size_bytes: 5_000_000_000,
    });
  });
});
