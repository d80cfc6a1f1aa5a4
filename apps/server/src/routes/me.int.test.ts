import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';

const backends = await testBackends();

describeOnBackends('GET /v1/me', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, admin, user } = api;

  it('says who the session is: email, admin or not, and each team with its role and BYOC flag', async () => {
    const owner = await user('me-owner@example.com');
    const member = await user('me-member@example.com');
    const root = await admin('me-admin@example.com');
    expect(
      (
        await call('POST', `/v1/teams/${owner.team.id}/members`, {
          body: { email: 'me-member@example.com' },
          headers: owner.auth,
        })
      ).status,
    ).toBe(201);
    const byoc = await call('PUT', `/v1/admin/teams/${owner.team.id}/byoc`, {
      body: { is_byoc: true },
      headers: root.auth,
    });
    expect(byoc.status).toBe(200);

    expect(await call('GET', '/v1/me', { headers: member.auth })).toEqual({
      status: 200,
      body: {
        id: member.user.id,
        email: 'me-member@example.com',
        is_admin: false,
        // In the order the teams were made.
        teams: [
          { id: owner.team.id, name: "me-owner@example.com's team", role: 'member', is_byoc: true },
          { id: member.team.id, name: "me-member@example.com's team", role: 'owner', is_byoc: false },
        ],
      },
    });
    const asAdmin = await call('GET', '/v1/me', { headers: root.auth });
    expect(asAdmin.body).toMatchObject({ email: 'me-admin@example.com', is_admin: true });
    expect(asAdmin.body.teams).toEqual([
      { id: root.team.id, name: "me-admin@example.com's team", role: 'owner', is_byoc: false },
    ]);
  });

  it('answers 401 without a session, and to an API key (it names a team, not a user)', async () => {
    const anonymous = await call('GET', '/v1/me');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.code).toBe('unauthenticated');
    const owner = await user('me-keyholder@example.com');
    const key = await call('POST', `/v1/teams/${owner.team.id}/api-keys`, {
      body: { name: 'k' },
      headers: owner.auth,
    });
    const withKey = await call('GET', '/v1/me', { headers: { 'x-api-key': key.body.key as string } });
    expect(withKey.status).toBe(401);
  });
});
