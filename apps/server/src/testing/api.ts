import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ServerType } from '@hono/node-server';
import { afterAll, beforeAll, expect } from 'vitest';
import { createLogger } from '@wrenn/core';
import type { AuthLimits } from '../auth/rate-limits.js';
import { SessionTokens } from '../auth/tokens.js';
import { openDatabase, type Db } from '../db/database.js';
import type { App, ServerDeps } from '../http/app-types.js';
import { buildApp, serveApp } from '../http/app.js';
import { ServerMetrics } from '../metrics/server-metrics.js';
import type { TrustedProxies } from '../http/client-address.js';
import type { FleetConfig } from '../config.js';
import { openFleet, type Fleet } from '../services/fleet/fleet.js';
import { BuildFiles } from '../services/builds/build-files.js';
import type { BuildQueue } from '../services/builds/builds.js';
import { startBuildQueue } from '../services/builds/queue.js';
import { buildRunner, RUNNER_DEFAULTS, type BuildRunnerOptions } from '../services/builds/runner.js';
import { createTestPostgres, postgresMissing } from './databases.js';

export { describeOnBackends } from './databases.js';

// What the server's *.int.test.ts files share: the backends every test runs on, and an API server on
// a real socket in front of each. Only for tests in this package (it registers vitest hooks).

export const testLogger = createLogger({ name: 'server-test', level: 'warn', pretty: false });

export interface Backend {
  name: string;
  /** Why this backend's tests are skipped (outside CI only: under CI a missing backend fails). */
  skip?: string;
  open(): Promise<Db>;
}

/**
 * PGlite, and a fresh database on the test PostgreSQL (dropped after the file's tests). Call once per
 * test file, at its top level, and hand the result to `describeOnBackends`.
 */
export async function testBackends(): Promise<Backend[]> {
  const target = await createTestPostgres();
  const pglite: Backend = {
    name: 'PGlite',
    open: () => openDatabase({ kind: 'pglite', dir: 'memory://' }, testLogger),
  };
  if ('unavailable' in target) {
    postgresMissing(target.unavailable); // throws under CI
    const skip = target.unavailable;
    return [pglite, { name: 'PostgreSQL', skip, open: () => Promise.reject(new Error(skip)) }];
  }
  afterAll(() => target.drop());
  return [
    pglite,
    { name: 'PostgreSQL', open: () => openDatabase({ kind: 'postgres', url: target.url }, testLogger) },
  ];
}

export interface CallOptions {
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

export interface CallResult {
  status: number;
  body: Record<string, unknown>;
}

export interface Session {
  token: string;
  user: { id: string };
  team: { id: string };
}

export interface TestServer {
  app: App;
  base: string;
  tokens: SessionTokens;
  /** The fleet the server uses (its hosts' credentials and connections). */
  fleet: Fleet;
  /** A JSON request to the server; the raw answer (for its headers). */
  send: (method: string, path: string, opts?: CallOptions) => Promise<Response>;
  /** A JSON request to the server; the answer's status and body parsed (`{}` when empty). */
  call: (method: string, path: string, opts?: CallOptions) => Promise<CallResult>;
  /** Signs a user up (expecting 201) and returns the session. */
  signup: (email: string, password?: string) => Promise<Session>;
  /** A signed-up user made admin in the database (as bootstrap.ts makes the first one). */
  admin: (email: string) => Promise<Session & { auth: Record<string, string> }>;
  /** A signed-up user with their bearer header and an API key of their team. */
  user: (email: string) => Promise<Session & { auth: Record<string, string>; key: Record<string, string> }>;
  stop: () => Promise<void>;
}

export const TEST_PASSWORD = 'correct horse battery';

/**
 * Test servers sign many users up from 127.0.0.1: limits no test reaches unless it sets its own
 * (`authLimits`), and signup open (`openSignup: false` for the tests of invites).
 */
export const TEST_AUTH_LIMITS: AuthLimits = {
  signupPerIp: { points: 100_000, durationSec: 3600 },
  signupPerEmail: { points: 100_000, durationSec: 3600 },
  loginPerIp: { points: 100_000, durationSec: 3600 },
  loginFailuresPerEmail: { points: 100_000, durationSec: 3600 },
  invitePerIp: { points: 100_000, durationSec: 3600 },
  invitePerToken: { points: 100_000, durationSec: 3600 },
};

/**
 * The API on 127.0.0.1 (a free port) over `db`, with the fleet: its static host's agent is a dead
 * port (nothing here reaches it, and what asks it gets a quick connection error).
 */
export async function startTestServer(
  db: Db,
  extra: Partial<ServerDeps> & {
    fleetConfig?: FleetConfig;
    /** Whose X-Forwarded-* to believe (default none). */
    trustedProxies?: TrustedProxies;
    /** Run template builds for real (on the fleet's hosts); otherwise they stay queued. */
    runBuilds?: Partial<BuildRunnerOptions> & { workers?: number };
  } = {},
): Promise<TestServer> {
  const tokens = new SessionTokens('test-secret-that-is-long-enough-for-hs256!');
  const fleet =
    extra.fleet ??
    (await openFleet(db, testLogger, { staticAgentUrl: 'http://127.0.0.1:9', config: extra.fleetConfig }));
  const files = new BuildFiles(await mkdtemp(path.join(tmpdir(), 'wrenn-build-files-')));
  const { runBuilds } = extra;
  const queue: BuildQueue & { stop?: () => Promise<void> } = runBuilds
    ? await startBuildQueue(
        db,
        buildRunner(
          { db, hosts: fleet.directory, files, logger: testLogger, sandboxReleased: extra.sandboxReleased },
          { ...RUNNER_DEFAULTS, ...runBuilds },
        ),
        { workers: runBuilds.workers ?? 2, timeoutSec: 3600, logger: testLogger },
      )
    : { enqueue: () => Promise.resolve(), cancelRunning: () => undefined };
  const app = buildApp({
    db,
    tokens,
    hosts: fleet.directory,
    fleet,
    logger: testLogger,
    builds: { files, queue },
    openSignup: true,
    authLimits: TEST_AUTH_LIMITS,
    // Measured as in production, so every test goes through the request timer too.
    metrics: new ServerMetrics({ db, logger: testLogger }),
    ...extra,
  });
  const server: ServerType = await serveApp(app, '127.0.0.1', 0, undefined, {
    trustedProxies: extra.trustedProxies,
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  function send(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
    return fetch(base + path, {
      method,
      headers: { 'content-type': 'application/json', ...opts.headers },
      body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
    });
  }

  async function call(method: string, path: string, opts: CallOptions = {}): Promise<CallResult> {
    const res = await send(method, path, opts);
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  async function signup(email: string, password = TEST_PASSWORD): Promise<Session> {
    const res = await call('POST', '/v1/auth/signup', { body: { email, password } });
    expect(res.status, `signup ${email}: ${JSON.stringify(res.body)}`).toBe(201);
    return res.body as unknown as Session;
  }

  return {
    app,
    base,
    tokens,
    fleet,
    send,
    call,
    signup,
    async admin(email) {
      const session = await signup(email);
      await db.updateTable('users').set({ is_admin: true }).where('id', '=', session.user.id).execute();
      return { ...session, auth: { authorization: `Bearer ${session.token}` } };
    },
    async user(email) {
      const session = await signup(email);
      const auth = { authorization: `Bearer ${session.token}` };
      const key = await call('POST', `/v1/teams/${session.team.id}/api-keys`, {
        body: { name: 'k' },
        headers: auth,
      });
      return { ...session, auth, key: { 'x-api-key': key.body.key as string } };
    },
    stop: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await queue.stop?.();
      await rm(files.dir, { recursive: true, force: true });
      fleet.directory.close();
    },
  };
}

/** Hooks for a describe block: a fresh database on `backend` and a server over it, for its tests. */
export function useTestServer(
  backend: Backend,
  extra: Parameters<typeof startTestServer>[1] = {},
): TestServer & { readonly db: Db } {
  let db: Db | undefined;
  let server: TestServer | undefined;
  const started = () => {
    if (!server) throw new Error('the test server is not started (use it inside a test)');
    return server;
  };
  // Opening PGlite takes seconds on a busy 2-core machine; the default 10 s hook limit is too tight.
  beforeAll(async () => {
    db = await backend.open();
    server = await startTestServer(db, extra);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await db?.destroy();
  });
  return {
    get db() {
      if (!db) throw new Error('the test database is not open (use it inside a test)');
      return db;
    },
    get app() {
      return started().app;
    },
    get base() {
      return started().base;
    },
    get tokens() {
      return started().tokens;
    },
    get fleet() {
      return started().fleet;
    },
    send: (...args) => started().send(...args),
    call: (...args) => started().call(...args),
    signup: (...args) => started().signup(...args),
    admin: (...args) => started().admin(...args),
    user: (...args) => started().user(...args),
    stop: () => started().stop(),
  };
}
