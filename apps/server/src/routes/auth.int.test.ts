import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { pruneRateLimits, type AuthLimits } from '../auth/rate-limits.js';
import type { Db } from '../db/database.js';
import {
  describeOnBackends,
  startTestServer,
  TEST_AUTH_LIMITS,
  TEST_PASSWORD,
  testBackends,
  useTestServer,
  type TestServer,
} from '../testing/api.js';

const backends = await testBackends();

describeOnBackends('signup, invites and the auth rate limits', backends, (backend) => {
  // Signup as it is by default: closed, by invitation.
  const api = useTestServer(backend, { openSignup: false });
  const { call } = api;
  const signup = (body: Record<string, unknown>, server: Pick<TestServer, 'call'> = api) =>
    server.call('POST', '/v1/auth/signup', { body: { password: TEST_PASSWORD, ...body } });
  const userCount = async () =>
    Number(
      (await api.db.selectFrom('users').select(api.db.fn.countAll().as('n')).executeTakeFirstOrThrow()).n,
    );

  /** An admin, made through a server with open signup over the same database. */
  async function anAdmin(email: string): Promise<Record<string, string>> {
    const open = await startTestServer(api.db, { openSignup: true });
    try {
      const session = await open.signup(email);
      await api.db.updateTable('users').set({ is_admin: true }).where('id', '=', session.user.id).execute();
      return { authorization: `Bearer ${session.token}` };
    } finally {
      await open.stop();
    }
  }

  it('refuses signup without an invite (403 naming why) unless the server opens it', async () => {
    const before = await userCount();
    const refused = await signup({ email: 'walk-in@example.com' });
    expect(refused).toEqual({
      status: 403,
      body: {
        code: 'permission_denied',
        message:
          'signup is by invitation: an administrator makes an invite (POST /v1/admin/invites), or the server runs with WRENN_OPEN_SIGNUP=true',
      },
    });
    expect(await userCount()).toBe(before);
    const open = await startTestServer(api.db, { openSignup: true });
    try {
      expect((await signup({ email: 'walk-in@example.com' }, open)).status).toBe(201);
    } finally {
      await open.stop();
    }
    expect(await userCount()).toBe(before + 1);
  });

  it('takes an admin’s invite once, before it expires, only for its email; only admins make them', async () => {
    const root = await anAdmin('invite-root@example.com');
    const plain = await startTestServer(api.db, { openSignup: true });
    const someone = await plain.signup('invite-plain@example.com');
    await plain.stop();
    expect(
      (
        await call('POST', '/v1/admin/invites', {
          body: {},
          headers: { authorization: `Bearer ${someone.token}` },
        })
      ).status,
    ).toBe(403);

    const made = await call('POST', '/v1/admin/invites', {
      body: { email: 'Invited@Example.com', expires_in_sec: 3600 },
      headers: root,
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    expect(made.body).toMatchObject({ email: 'invited@example.com', used_at: null, used_by: null });
    const token = made.body.token as string;
    expect(token).toMatch(/^wri_/);
    // Stored only as a hash, never listed.
    const listed = await call('GET', '/v1/admin/invites', { headers: root });
    expect(JSON.stringify(listed.body)).not.toContain(token);
    expect(JSON.stringify(await api.db.selectFrom('invites').selectAll().execute())).not.toContain(token);

    const refusal = (message: string) => ({ status: 403, body: { code: 'permission_denied', message } });
    expect(await signup({ email: 'someone-else@example.com', invite: token })).toEqual(
      refusal('invite: made for another email address'),
    );
    const used = await signup({ email: 'invited@example.com', invite: token });
    expect(used.status, JSON.stringify(used.body)).toBe(201);
    const userId = (used.body.user as { id: string }).id;
    expect(await signup({ email: 'invited-again@example.com', invite: token })).toEqual(
      refusal('invite: already used'),
    );
    const after = (await call('GET', '/v1/admin/invites', { headers: root })).body.invites as {
      id: string;
      used_by: string | null;
      used_at: string | null;
    }[];
    expect(after.find((i) => i.id === made.body.id)).toMatchObject({
      used_by: userId,
      used_at: expect.any(String) as string,
    });

    expect(await signup({ email: 'guess@example.com', invite: 'wri_not-a-real-invite' })).toEqual(
      refusal('invite: no such invite'),
    );
    // An invite for anyone, expired.
    const stale = await call('POST', '/v1/admin/invites', { body: {}, headers: root });
    await sql`update invites set expires_at = now() - interval '1 second' where id = ${stale.body.id}`.execute(
      api.db,
    );
    expect(await signup({ email: 'late@example.com', invite: stale.body.token })).toEqual(
      refusal('invite: expired'),
    );
    // An invite for anyone works for anyone; a signup that fails (the email is taken) leaves it unused.
    const open = await call('POST', '/v1/admin/invites', { body: {}, headers: root });
    expect((await signup({ email: 'invited@example.com', invite: open.body.token })).status).toBe(409);
    expect((await signup({ email: 'anyone@example.com', invite: open.body.token })).status).toBe(201);
    // Bad input is 400, not a refusal.
    const bad = await call('POST', '/v1/admin/invites', { body: { expires_in_sec: 1 }, headers: root });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^expires_in_sec: /);

    const entries = (await call('GET', '/v1/admin/audit?limit=500', { headers: root })).body.entries as {
      action: string;
      target: string;
      actor_user_id: string;
    }[];
    expect(entries.find((e) => e.action === 'invite.redeem' && e.target === made.body.id)).toMatchObject({
      actor_user_id: userId,
    });
    expect(entries.filter((e) => e.action === 'invite.create')).toHaveLength(3);
  });

  describe2Servers();

  /**
   * Two servers over the database (on PostgreSQL, each with its own connection pool, as two replicas
   * have), with `limits` over the test defaults; the counters start empty.
   */
  async function twoServers(
    limits: Partial<AuthLimits>,
  ): Promise<[TestServer, TestServer, () => Promise<void>]> {
    await sql`delete from auth_rate_limits`.execute(api.db);
    const secondDb: Db = backend.name === 'PostgreSQL' ? await backend.open() : api.db;
    const authLimits = { ...TEST_AUTH_LIMITS, ...limits };
    const a = await startTestServer(api.db, { openSignup: true, authLimits });
    const b = await startTestServer(secondDb, { openSignup: true, authLimits });
    return [
      a,
      b,
      async () => {
        await a.stop();
        await b.stop();
        if (secondDb !== api.db) await secondDb.destroy();
      },
    ];
  }

  async function expectLimited(res: Response, message: RegExp, windowSec: number): Promise<void> {
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSec,
      `Retry-After ${retryAfter}`,
    ).toBe(true);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('rate_limited');
    expect(body.message).toMatch(message);
  }

  function describe2Servers(): void {
    const post = (server: TestServer, path: string, body: unknown) => server.send('POST', path, { body });

    it('limits signups per address and per email across two servers on one database (429 + Retry-After)', async () => {
      const [a, b, stop] = await twoServers({ signupPerIp: { points: 3, durationSec: 60 } });
      try {
        const statuses: number[] = [];
        for (const [server, email] of [
          [a, 'ip-1@example.com'],
          [b, 'ip-2@example.com'],
          [a, 'ip-3@example.com'],
        ] as const)
          statuses.push((await post(server, '/v1/auth/signup', { email, password: TEST_PASSWORD })).status);
        expect(statuses).toEqual([201, 201, 201]);
        const before = await userCount();
        for (const server of [b, a])
          await expectLimited(
            await post(server, '/v1/auth/signup', { email: 'ip-4@example.com', password: TEST_PASSWORD }),
            /^too many signups from this address; try again in \d+ s$/,
            60,
          );
        // Refused before any work: no user, no password hashed.
        expect(await userCount()).toBe(before);
      } finally {
        await stop();
      }

      const [c, d, stop2] = await twoServers({ signupPerEmail: { points: 2, durationSec: 60 } });
      try {
        const body = { email: 'twice@example.com', password: TEST_PASSWORD };
        expect((await post(c, '/v1/auth/signup', body)).status).toBe(201);
        expect((await post(d, '/v1/auth/signup', body)).status).toBe(409);
        await expectLimited(await post(c, '/v1/auth/signup', body), /^too many signups for this email;/, 60);
        // Another email from the same address is not limited.
        expect((await post(d, '/v1/auth/signup', { ...body, email: 'once@example.com' })).status).toBe(201);
      } finally {
        await stop2();
      }
    });

    it('limits logins per address and failed logins per email across two servers', async () => {
      const [a, b, stop] = await twoServers({
        loginPerIp: { points: 4, durationSec: 60 },
        loginFailuresPerEmail: { points: 2, durationSec: 60 },
      });
      try {
        await a.signup('login-limit@example.com');
        await b.signup('login-other@example.com');
        const login = (server: TestServer, email: string, password: string) =>
          post(server, '/v1/auth/login', { email, password });
        expect((await login(a, 'login-limit@example.com', 'wrong password!')).status).toBe(401);
        expect((await login(b, 'login-limit@example.com', 'wrong password!')).status).toBe(401);
        // The email is locked on both servers, even with the right password…
        await expectLimited(
          await login(a, 'login-limit@example.com', TEST_PASSWORD),
          /^too many failed logins for this email;/,
          60,
        );
        // …while another email logs in: the fourth login from this address.
        expect((await login(b, 'login-other@example.com', TEST_PASSWORD)).status).toBe(200);
        await expectLimited(
          await login(a, 'login-other@example.com', TEST_PASSWORD),
          /^too many logins from this address;/,
          60,
        );
      } finally {
        await stop();
      }
    });

    it('limits invite attempts per address and per invite across two servers', async () => {
      const [a, b, stop] = await twoServers({
        invitePerIp: { points: 3, durationSec: 60 },
        invitePerToken: { points: 2, durationSec: 60 },
      });
      try {
        const attempt = (server: TestServer, invite: string, email: string) =>
          post(server, '/v1/auth/signup', { email, password: TEST_PASSWORD, invite });
        expect((await attempt(a, 'wri_guess-1', 'g1@example.com')).status).toBe(403);
        expect((await attempt(b, 'wri_guess-1', 'g2@example.com')).status).toBe(403);
        await expectLimited(
          await attempt(a, 'wri_guess-1', 'g3@example.com'),
          /^too many attempts with this invite;/,
          60,
        );
        // That was the third attempt from this address: the next, with another invite, is refused too.
        await expectLimited(
          await attempt(b, 'wri_guess-2', 'g4@example.com'),
          /^too many invites tried from this address;/,
          60,
        );
      } finally {
        await stop();
      }
    });

    it('counts in the database: the counters are rows any server reads, pruned once their window ended', async () => {
      const [a, , stop] = await twoServers({ signupPerIp: { points: 1, durationSec: 1 } });
      try {
        expect(
          (await post(a, '/v1/auth/signup', { email: 'w1@example.com', password: TEST_PASSWORD })).status,
        ).toBe(201);
        const rows = await api.db.selectFrom('auth_rate_limits').select(['key', 'points']).execute();
        expect(rows).toContainEqual({ key: 'signupPerIp:127.0.0.1', points: 1 });
        await new Promise((r) => setTimeout(r, 1100));
        // The leader's pass deletes counters whose window ended; the next signup starts a new one.
        expect(await pruneRateLimits(api.db)).toBeGreaterThanOrEqual(1);
        const left = await api.db.selectFrom('auth_rate_limits').select('key').execute();
        expect(left.map((r) => r.key)).not.toContain('signupPerIp:127.0.0.1');
        // Positive control: the counters of windows still open stay.
        expect(left.map((r) => r.key)).toContain('signupPerEmail:w1@example.com');
        expect(
          (await post(a, '/v1/auth/signup', { email: 'w2@example.com', password: TEST_PASSWORD })).status,
        ).toBe(201);
      } finally {
        await stop();
      }
    });
  }
});
