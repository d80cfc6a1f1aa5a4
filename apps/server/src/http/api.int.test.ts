import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import { Validator } from '@seriousme/openapi-schema-validator';
import { inspectRoutes } from 'hono/dev';
import { describe, expect, it } from 'vitest';
import { SessionTokens } from '../auth/tokens.js';
import {
  startTestServer,
  TEST_AUTH_LIMITS,
  TEST_PASSWORD,
  describeOnBackends,
  testBackends,
  useTestServer,
} from '../testing/api.js';
import type { App } from './app-types.js';

const backends = await testBackends();

describeOnBackends('the HTTP API', backends, (backend) => {
  // Auth and team routes never reach the agent; sandbox routes are tested end to end (test/e2e).
  const api = useTestServer(backend);
  const { call, signup } = api;

  it('signs up (with a default team), logs in, and refuses wrong passwords and duplicates', async () => {
    const ada = await signup('Ada@Example.com');
    expect(ada.team.id).toMatch(/^[0-9a-f-]{36}$/);
    const login = await call('POST', '/v1/auth/login', {
      body: { email: 'ada@example.com', password: 'correct horse battery' },
    });
    expect(login.status).toBe(200);
    expect(typeof login.body.token).toBe('string');
    const wrong = await call('POST', '/v1/auth/login', {
      body: { email: 'ada@example.com', password: 'wrong password!' },
    });
    expect(wrong).toEqual({
      status: 401,
      body: { code: 'unauthenticated', message: 'wrong email or password' },
    });
    const nobody = await call('POST', '/v1/auth/login', {
      body: { email: 'nobody@example.com', password: 'whatever123' },
    });
    expect(nobody.body).toEqual(wrong.body);
    const again = await call('POST', '/v1/auth/signup', {
      body: { email: 'ada@example.com', password: 'another password' },
    });
    expect(again.status).toBe(409);
    expect(again.body.message).toMatch(/^email: /);
    const stored = await api.db
      .selectFrom('users')
      .select('password_hash')
      .where('email', '=', 'ada@example.com')
      .executeTakeFirst();
    expect(stored?.password_hash).toMatch(/^\$argon2id\$/);
  });

  it('answers bad input with 400 naming the field, and nothing is written', async () => {
    const before = await api.db
      .selectFrom('users')
      .select(api.db.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    const cases: [string, { body?: unknown; raw?: string }, RegExp][] = [
      ['malformed JSON', { raw: '{"email": ' }, /^body: malformed JSON/],
      [
        'unknown field',
        { body: { email: 'a@b.co', password: '12345678', admin: true } },
        /^body: .*\(admin\)/,
      ],
      ['wrong type', { body: { email: 'a@b.co', password: 12345678 } }, /^password: /],
      ['bad email', { body: { email: 'not-an-email', password: '12345678' } }, /^email: /],
      ['short password', { body: { email: 'a@b.co', password: 'short' } }, /^password: /],
    ];
    for (const [what, input, message] of cases) {
      const res = await call('POST', '/v1/auth/signup', input);
      expect(res.status, what).toBe(400);
      expect(res.body.code, what).toBe('invalid_argument');
      expect(res.body.message, what).toMatch(message);
    }
    const after = await api.db
      .selectFrom('users')
      .select(api.db.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  it('refuses forged, expired and missing bearer tokens', async () => {
    const ada = await signup('grace@example.com');
    const ok = await call('GET', '/v1/teams', { headers: { authorization: `Bearer ${ada.token}` } });
    expect(ok.status).toBe(200);
    const forged = await new SessionTokens('another-secret-that-is-also-long-enough!').issue(ada.user.id);
    for (const header of [`Bearer ${forged}`, 'Bearer not.a.jwt', '', `Basic ${ada.token}`]) {
      const res = await call('GET', '/v1/teams', { headers: header ? { authorization: header } : {} });
      expect(res.status, header).toBe(401);
      expect(res.body.code).toBe('unauthenticated');
    }
  });

  it("acts for a team with a session and X-Wrenn-Team (the dashboard), only for the user's own teams", async () => {
    const lin = await api.user('lin@example.com');
    const other = await api.user('other-team@example.com');
    const asLin = (team?: string) => ({
      headers: { ...lin.auth, ...(team === undefined ? {} : { 'x-wrenn-team': team }) },
    });
    expect(await call('GET', '/v1/sandboxes', asLin(lin.team.id))).toEqual({
      status: 200,
      body: { sandboxes: [] },
    });
    expect((await call('GET', '/v1/sandboxes', { headers: lin.key })).status).toBe(200);
    const missing = await call('GET', '/v1/sandboxes', asLin());
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^X-Wrenn-Team: /);
    expect((await call('GET', '/v1/sandboxes', asLin('not-a-uuid'))).status).toBe(400);
    const foreign = await call('GET', '/v1/sandboxes', asLin(other.team.id));
    expect(foreign).toEqual({
      status: 403,
      body: { code: 'permission_denied', message: 'X-Wrenn-Team: you are not a member of this team' },
    });
    const bad = await call('GET', '/v1/sandboxes', {
      headers: { authorization: 'Bearer x', 'x-wrenn-team': lin.team.id },
    });
    expect(bad.status).toBe(401);
  });

  it('creates, lists and revokes API keys (shown once, stored hashed); a revoked key stops working', async () => {
    const owner = await signup('keys@example.com');
    const auth = { authorization: `Bearer ${owner.token}` };
    const created = await call('POST', `/v1/teams/${owner.team.id}/api-keys`, {
      body: { name: 'ci' },
      headers: auth,
    });
    expect(created.status).toBe(201);
    const key = created.body.key as string;
    expect(key).toMatch(/^wrn_/);
    const listed = await call('GET', `/v1/teams/${owner.team.id}/api-keys`, { headers: auth });
    expect(JSON.stringify(listed.body)).not.toContain(key);
    const rows = await api.db
      .selectFrom('api_keys')
      .selectAll()
      .where('team_id', '=', owner.team.id)
      .execute();
    expect(JSON.stringify(rows)).not.toContain(key);

    const withKey = { 'x-api-key': key };
    expect((await call('GET', '/v1/sandboxes', { headers: withKey })).body).toEqual({ sandboxes: [] });
    const revoked = await call('DELETE', `/v1/teams/${owner.team.id}/api-keys/${created.body.id as string}`, {
      headers: auth,
    });
    expect(revoked.status).toBe(204);
    const after = await call('GET', '/v1/sandboxes', { headers: withKey });
    expect(after).toEqual({
      status: 401,
      body: { code: 'unauthenticated', message: 'the API key is invalid or was revoked' },
    });
  });

  it("keeps teams apart: another team's keys and members are 404, not 403", async () => {
    const a = await signup('team-a@example.com');
    const b = await signup('team-b@example.com');
    const keyOfA = await call('POST', `/v1/teams/${a.team.id}/api-keys`, {
      body: { name: 'a' },
      headers: { authorization: `Bearer ${a.token}` },
    });
    const asB = { authorization: `Bearer ${b.token}` };
    for (const [method, path] of [
      ['GET', `/v1/teams/${a.team.id}/members`],
      ['GET', `/v1/teams/${a.team.id}/api-keys`],
      ['DELETE', `/v1/teams/${a.team.id}/api-keys/${keyOfA.body.id as string}`],
    ] as const) {
      const res = await call(method, path, { headers: asB });
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    const addSelf = await call('POST', `/v1/teams/${a.team.id}/api-keys`, {
      body: { name: 'sneaky' },
      headers: asB,
    });
    expect(addSelf.status).toBe(404);
    expect(
      (
        await call('GET', `/v1/teams/${a.team.id}/api-keys`, {
          headers: { authorization: `Bearer ${a.token}` },
        })
      ).body.api_keys,
    ).toHaveLength(1);
  });

  it('refuses logins for an email after too many failures (429 + Retry-After), even the right password', async () => {
    // A server of its own with small limits, over the same database.
    const limited = await startTestServer(api.db, {
      authLimits: { ...TEST_AUTH_LIMITS, loginFailuresPerEmail: { points: 3, durationSec: 1.5 } },
    });
    try {
      await signup('locked@example.com');
      await signup('bystander@example.com');
      const login = (email: string, password: string) =>
        limited.send('POST', '/v1/auth/login', { body: { email, password } });
      for (let i = 0; i < 3; i++) {
        expect((await login('locked@example.com', 'wrong password!')).status).toBe(401);
      }
      for (const [email, password] of [
        ['locked@example.com', 'wrong password!'],
        ['locked@example.com', TEST_PASSWORD],
        ['LOCKED@example.com', TEST_PASSWORD],
      ] as const) {
        const res = await login(email, password);
        expect(res.status, `${email} ${password}`).toBe(429);
        const retryAfter = Number(res.headers.get('retry-after'));
        expect(
          Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2,
          `Retry-After ${retryAfter}`,
        ).toBe(true);
        expect(await res.json()).toEqual({
          code: 'rate_limited',
          message: expect.stringMatching(
            /^too many failed logins for this email; try again in \d+ s$/,
          ) as string,
        });
      }
      // Other emails are not affected.
      expect((await login('bystander@example.com', TEST_PASSWORD)).status).toBe(200);

      // Once the window has passed the right password works, and a success forgets earlier failures.
      await new Promise((r) => setTimeout(r, 1600));
      expect((await login('locked@example.com', TEST_PASSWORD)).status).toBe(200);
      for (let i = 0; i < 2; i++) {
        expect((await login('locked@example.com', 'wrong password!')).status).toBe(401);
      }
      expect((await login('locked@example.com', TEST_PASSWORD)).status).toBe(200);

      // Guesses sent at once cannot all slip in while their hashes are verified; unknown emails count too.
      const statuses = await Promise.all(
        Array.from({ length: 6 }, () =>
          login('nobody-here@example.com', 'wrong password!').then((r) => r.status),
        ),
      );
      expect(statuses.sort()).toEqual([401, 401, 401, 429, 429, 429]);
    } finally {
      await limited.stop();
    }
  });

  it('serves a valid OpenAPI 3.1 document', async () => {
    const res = await call('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const validator = new Validator();
    const result = await validator.validate(res.body);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');

    // The validator does reject a broken document.
    const broken = structuredClone(res.body) as { info?: unknown };
    delete broken.info;
    expect((await new Validator().validate(broken)).valid).toBe(false);

    // The login limit is part of the contract.
    const login = (
      res.body as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }
    ).paths['/v1/auth/login']?.post;
    expect(login?.responses['429']).toMatchObject({
      headers: { 'Retry-After': { schema: { type: 'integer' } } },
    });
  });

  it('documents every route it serves, and serves every route it documents', async () => {
    const document = (await call('GET', '/openapi.json')).body as unknown as OpenApiDocument;
    const served = servedRoutes(api.app);
    const documented = documentedRoutes(document);
    expect(served.length).toBeGreaterThan(10);
    const undocumented = served.filter((r) => !documented.includes(r));
    const notServed = documented.filter((r) => !served.includes(r));
    expect({ undocumented, notServed }).toEqual({ undocumented: [], notServed: [] });
    expect((await call('GET', '/v1/nothing-here')).body.code).toBe('not_found');
  });
});

// The comparison must itself catch a route that is served but not documented, and the reverse.
describe('the route coverage check', () => {
  it('finds undocumented routes and documented routes nobody serves, and ignores middleware and docs', () => {
    const app: App = new OpenAPIHono();
    app.use('/v1/things/*', async (_c, next) => next());
    app.openapi(
      createRoute({
        method: 'get',
        path: '/v1/things/{thingId}',
        responses: { 200: { description: 'A thing' } },
      }),
      (c) => c.json({}, 200),
    );
    app.delete('/v1/things/:thingId', (c) => c.body(null, 204));
    app.get('/openapi.json', (c) => c.json({}));
    app.get('/docs/assets/:file', (c) => c.text(''));
    const document = app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 't', version: '1' } });
    document.paths!['/v1/ghost'] = { post: { responses: {} } };
    expect(servedRoutes(app)).toEqual(['GET /v1/things/{thingId}', 'DELETE /v1/things/{thingId}']);
    expect(documentedRoutes(document as OpenApiDocument)).toEqual([
      'GET /v1/things/{thingId}',
      'POST /v1/ghost',
    ]);
  });
});

type OpenApiDocument = { paths?: Record<string, Record<string, unknown>> };

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
/** The API's own document and pages (docs, the dashboard): not operations of the API. */
const isDocsRoute = (path: string) =>
  path === '/openapi.json' ||
  path === '/openapi.yaml' ||
  path === '/docs' ||
  path.startsWith('/docs/') ||
  path === '/' ||
  path.startsWith('/assets/');

/** `METHOD /path/{param}` for every handler the app serves (not middleware, not the docs themselves). */
function servedRoutes(app: App): string[] {
  const routes = inspectRoutes(app)
    .filter((r) => !r.isMiddleware && !isDocsRoute(r.path))
    // Hono's `:param` (maybe with a `{regex}`) is OpenAPI's `{param}`.
    .map((r) => `${r.method.toUpperCase()} ${r.path.replace(/:(\w+)(\{[^}]*\})?/g, '{$1}')}`);
  return [...new Set(routes)];
}

/** `METHOD /path/{param}` for every operation in the document. */
function documentedRoutes(document: OpenApiDocument): string[] {
  return Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((key) => HTTP_METHODS.includes(key))
      .map((method) => `${method.toUpperCase()} ${path}`),
  );
}
