import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';

const backends = await testBackends();

describeOnBackends('team roles', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, admin, user } = api;

  it('lets members list, and only owners and admins manage keys and members (403 naming the role)', async () => {
    const owner = await user('roles-owner@example.com');
    const member = await user('roles-member@example.com');
    const outsider = await user('roles-outsider@example.com');
    const root = await admin('roles-admin@example.com');
    const t = owner.team.id;
    expect(
      (
        await call('POST', `/v1/teams/${t}/members`, {
          body: { email: 'roles-member@example.com' },
          headers: owner.auth,
        })
      ).status,
    ).toBe(201);
    const ownerKey = (await call('GET', `/v1/teams/${t}/api-keys`, { headers: owner.auth })).body
      .api_keys as {
      id: string;
    }[];

    // Members read.
    for (const path of [`/v1/teams/${t}/members`, `/v1/teams/${t}/api-keys`])
      expect((await call('GET', path, { headers: member.auth })).status, path).toBe(200);

    // Members may not change anything; each refusal names what is needed and the caller's role.
    const denied = (what: string) => ({
      status: 403,
      body: {
        code: 'permission_denied',
        message: `only team owners (or platform admins) ${what}; your role in this team is member`,
      },
    });
    const attempts: [string, string, unknown, string][] = [
      ['POST', `/v1/teams/${t}/api-keys`, { name: 'mine' }, 'create API keys'],
      ['DELETE', `/v1/teams/${t}/api-keys/${ownerKey[0]!.id}`, undefined, 'revoke API keys'],
      ['POST', `/v1/teams/${t}/members`, { email: 'roles-outsider@example.com' }, 'add members'],
      ['DELETE', `/v1/teams/${t}/members/${owner.user.id}`, undefined, 'remove members'],
      ['PATCH', `/v1/teams/${t}/members/${member.user.id}`, { role: 'owner' }, "change members' roles"],
      ['DELETE', `/v1/teams/${t}`, undefined, 'delete the team'],
    ];
    for (const [method, path, body, what] of attempts)
      expect(await call(method, path, { body, headers: member.auth }), `${method} ${path}`).toEqual(
        denied(what),
      );
    // Nothing changed.
    expect(
      (await call('GET', `/v1/teams/${t}/api-keys`, { headers: owner.auth })).body.api_keys,
    ).toHaveLength(1);
    expect((await call('GET', `/v1/teams/${t}/members`, { headers: owner.auth })).body.members).toHaveLength(
      2,
    );
    // Someone outside the team does not see it at all.
    for (const [method, path, body] of attempts)
      expect((await call(method, path, { body, headers: outsider.auth })).status, `${method} ${path}`).toBe(
        404,
      );

    // The refusals are audited as denied, with who tried.
    const log = await call('GET', `/v1/teams/${t}/audit?limit=500`, { headers: owner.auth });
    const refusals = (log.body.entries as { action: string; result: string; actor_user_id: string }[]).filter(
      (e) => e.result === 'denied',
    );
    expect(refusals.map((e) => e.action).sort()).toEqual(
      [
        'api_key.create',
        'api_key.revoke',
        'member.add',
        'member.remove',
        'member.role_change',
        'team.delete',
      ].sort(),
    );
    expect(new Set(refusals.map((e) => e.actor_user_id))).toEqual(new Set([member.user.id]));

    // A platform admin who is not in the team may do what an owner does.
    const key = await call('POST', `/v1/teams/${t}/api-keys`, {
      body: { name: 'by-admin' },
      headers: root.auth,
    });
    expect(key.status).toBe(201);
    expect(
      (await call('DELETE', `/v1/teams/${t}/api-keys/${key.body.id as string}`, { headers: root.auth }))
        .status,
    ).toBe(204);

    // An owner promotes the member, who may then manage keys.
    const promoted = await call('PATCH', `/v1/teams/${t}/members/${member.user.id}`, {
      body: { role: 'owner' },
      headers: owner.auth,
    });
    expect(promoted).toEqual({
      status: 200,
      body: { user_id: member.user.id, email: 'roles-member@example.com', role: 'owner' },
    });
    expect(
      (await call('POST', `/v1/teams/${t}/api-keys`, { body: { name: 'now' }, headers: member.auth })).status,
    ).toBe(201);
    expect(
      (
        await call('PATCH', `/v1/teams/${t}/members/${member.user.id}`, {
          body: { role: 'admin' },
          headers: owner.auth,
        })
      ).status,
    ).toBe(400);
  });

  it('keeps at least one owner, and removes members', async () => {
    const owner = await user('last-owner@example.com');
    const other = await user('last-other@example.com');
    const t = owner.team.id;
    await call('POST', `/v1/teams/${t}/members`, {
      body: { email: 'last-other@example.com' },
      headers: owner.auth,
    });
    const lastOwner = {
      status: 409,
      body: {
        code: 'already_exists',
        message: 'a team keeps at least one owner: make another member owner first',
      },
    };
    expect(
      await call('PATCH', `/v1/teams/${t}/members/${owner.user.id}`, {
        body: { role: 'member' },
        headers: owner.auth,
      }),
    ).toEqual(lastOwner);
    expect(await call('DELETE', `/v1/teams/${t}/members/${owner.user.id}`, { headers: owner.auth })).toEqual(
      lastOwner,
    );

    expect(
      (await call('DELETE', `/v1/teams/${t}/members/${other.user.id}`, { headers: owner.auth })).status,
    ).toBe(204);
    expect(
      (await call('GET', `/v1/teams/${t}`.concat('/members'), { headers: owner.auth })).body.members,
    ).toEqual([{ user_id: owner.user.id, email: 'last-owner@example.com', role: 'owner' }]);
    // The removed member no longer sees the team.
    expect((await call('GET', `/v1/teams/${t}/members`, { headers: other.auth })).status).toBe(404);
    expect(
      (await call('DELETE', `/v1/teams/${t}/members/${other.user.id}`, { headers: owner.auth })).status,
    ).toBe(404);

    // With a second owner, the first may step down.
    await call('POST', `/v1/teams/${t}/members`, {
      body: { email: 'last-other@example.com' },
      headers: owner.auth,
    });
    await call('PATCH', `/v1/teams/${t}/members/${other.user.id}`, {
      body: { role: 'owner' },
      headers: owner.auth,
    });
    const down = await call('PATCH', `/v1/teams/${t}/members/${owner.user.id}`, {
      body: { role: 'member' },
      headers: owner.auth,
    });
    expect(down.status).toBe(200);
    expect(down.body.role).toBe('member');
  });
});
