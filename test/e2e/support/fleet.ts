import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, Http2SessionManager } from '@connectrpc/connect-node';
import pg from 'pg';
import { hostagent } from '@wrenn/contracts';
import { errorMessage, pollUntil } from '@wrenn/core';
import {
  controlPlaneClientTlsOptions,
  generateKeyPair,
  issueCertificate,
  type TlsMaterial,
} from '@wrenn/pki';
import type { TestPostgres } from '@wrenn/server/testing';
import { installDir, repoRoot, type AgentClient } from './agent-process.js';
import { apiCall, type ApiResult } from './api-client.js';

// A fleet on this machine for the e2e tests (docs/fleet.md): control-plane replicas as processes of
// their own on one PostgreSQL database, behind a TCP front (what a load balancer does: each
// connection goes to the first replica that accepts it), and dev hosts (scripts/dev-host.sh: real
// agents in network namespaces of their own) registered through the API.

/** scripts/dev-host.sh with `args`; its output, or an error with it. */
export function devHost(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(repoRoot, 'scripts/dev-host.sh'), ...args], {
      env: { ...process.env, WRENN_DIR: installDir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`dev-host.sh ${args.join(' ')}: ${code}\n${out}`)),
    );
  });
}

/** Waits until `check` gives a value; throws naming `what` (and the last value seen) when it never does. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  let last: unknown;
  const value = await pollUntil(
    async () => {
      try {
        return await check();
      } catch (err) {
        last = err;
        return undefined;
      }
    },
    { timeoutMs, intervalMs: 200 },
  );
  if (value === undefined)
    throw new Error(
      `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${errorMessage(last)}` : ''}`,
    );
  return value;
}

/** One dev host: an agent in netns `wdev-<name>`, data in `$WRENN_DIR/dev-hosts/<name>`. */
export class DevHost {
  /** Its number K: it listens on 10.98.K.2:7070 (known after its first start). */
  index?: number;

  constructor(readonly name: string) {}

  get dir(): string {
    return path.join(installDir, 'dev-hosts', this.name);
  }

  get address(): string {
    if (this.index === undefined) throw new Error(`dev host ${this.name} never started`);
    return `10.98.${this.index}.2:7070`;
  }

  /** Starts its agent; `env` needs WRENN_URL, and WRENN_REGISTRATION_TOKEN the first time. */
  async start(env: Record<string, string>): Promise<void> {
    const out = await devHost(['start', this.name], env);
    const [, index] = /https:\/\/10\.98\.(\d+)\.2:7070/.exec(out) ?? [];
    if (!index) throw new Error(`dev-host.sh start ${this.name} said no address:\n${out}`);
    this.index = Number(index);
  }

  /** SIGKILL: its sandboxes' files stay for its next start. */
  kill = () => devHost(['kill', this.name]);
  partition = () => devHost(['partition', this.name]);
  heal = () => devHost(['heal', this.name]);

  /** Removes everything of it (namespace, rules, data, leftover runsc processes), if there is any. */
  async remove(): Promise<void> {
    if (existsSync(this.dir) || existsSync(`/var/run/netns/wdev-${this.name}`))
      await devHost(['rm', this.name]);
  }

  log(): Promise<string> {
    return readFile(path.join(this.dir, 'agent.log'), 'utf8').catch(() => '');
  }

  /** Sandbox directories its agent holds (running and paused ones). */
  sandboxDirs(): Promise<string[]> {
    return readdir(path.join(this.dir, 'sandboxes')).catch(() => [] as string[]);
  }

  /** runsc processes of its agent (found by their `--root`). */
  async runscProcesses(): Promise<string[]> {
    const root = `--root=${path.join(this.dir, 'run/runsc')}`;
    const found: string[] = [];
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.split('\0').includes(root)) found.push(pid);
    }
    return found;
  }
}

/** A control plane in a process of its own (`wrenn server`'s configuration, from the environment). */
export interface ServerReplica {
  name: string;
  url: string;
  child: ChildProcess;
  dataDir: string;
  /** Its log (stdout and stderr). */
  logs(): string;
  /** Its exit code or signal, once it exited. */
  exited: Promise<string>;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
}

/** `node --import tsx apps/server/src/testing/run-server.ts` with `env`; resolves once it listens. */
export async function startServerReplica(name: string, env: Record<string, string>): Promise<ServerReplica> {
  const dataDir = await mkdtemp(path.join(tmpdir(), `wrenn-replica-${name}-`));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'apps/server/src/testing/run-server.ts')],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        WRENN_DIR: dataDir,
        WRENN_SERVER_LISTEN: '127.0.0.1:0',
        LOG_LEVEL: 'info',
        // The tests sign their users up themselves (production's default is invites only).
        WRENN_OPEN_SIGNUP: 'true',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  // WRENN_E2E_LOG=<file> keeps every process's log (appended) for debugging a failed run.
  const logFile = process.env.WRENN_E2E_LOG
    ? createWriteStream(process.env.WRENN_E2E_LOG, { flags: 'a' })
    : undefined;
  const collect = (b: Buffer) => {
    log = (log + b.toString()).slice(-2_000_000);
    logFile?.write(`[server ${name}] ${b.toString()}`);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  // After its output was read to the end, so nothing is written to the log file after this.
  child.once('close', () => logFile?.end());
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server ${name} did not start in 60 s:\n${log}`)),
      60_000,
    );
    child.stdout.on('data', () => {
      const m = /^listening (http:\/\/\S+)$/m.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`server ${name} exited (${how}) before listening:\n${log}`));
    });
  });
  return {
    name,
    url,
    child,
    dataDir,
    logs: () => log,
    exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * What a load balancer in front of the replicas does, at the TCP level: each new connection goes to
 * the first backend (in the order given) that accepts it. Agents are given its URL, so they reach
 * whichever replica is alive.
 */
export class ControlPlaneFront {
  private backends: string[] = [];
  private readonly open = new Set<net.Socket>();

  private constructor(private readonly server: net.Server) {}

  static async start(): Promise<ControlPlaneFront> {
    const server = net.createServer();
    const front = new ControlPlaneFront(server);
    server.on('connection', (socket) => front.accept(socket));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return front;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** New connections go to the first of `urls` that accepts; open ones are cut, so clients reconnect. */
  route(urls: string[]): void {
    this.backends = urls.map((u) => new URL(u).host);
    for (const s of this.open) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    client.on('error', () => undefined);
    client.pause();
    const tryBackend = (i: number): void => {
      const backend = this.backends[i];
      if (!backend || client.destroyed) return void client.destroy();
      const at = backend.lastIndexOf(':');
      const upstream = net.connect(Number(backend.slice(at + 1)), backend.slice(0, at));
      let connected = false;
      upstream.on('error', () => (connected ? client.destroy() : tryBackend(i + 1)));
      upstream.once('connect', () => {
        connected = true;
        this.open.add(upstream);
        upstream.once('close', () => {
          this.open.delete(upstream);
          client.destroy();
        });
        client.once('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryBackend(0);
  }
}

export interface Session {
  token: string;
  userId: string;
  teamId: string;
}

/**
 * The whole fleet of one test file: the database, replicas, the front, dev hosts, and the API as
 * the admin. `close` removes all of it (dev hosts with `dev-host.sh rm`, replicas killed, the
 * database dropped).
 */
export class Fleet {
  readonly replicas: ServerReplica[] = [];
  readonly devHosts = new Map<string, DevHost>();
  adminToken = '';
  private controlPlane?: Promise<TlsMaterial>;
  private readonly agentSessions: Http2SessionManager[] = [];

  private constructor(
    readonly database: TestPostgres,
    /** A connection of the test's own, for what the API does not show (the leader lock, tokens). */
    readonly sql: pg.Client,
    readonly front: ControlPlaneFront,
    /** Environment of every replica (the fleet's timings). */
    private readonly serverEnv: Record<string, string>,
    /** Environment of every dev host's agent. */
    private readonly agentEnv: Record<string, string>,
  ) {}

  static async start(
    database: TestPostgres,
    opts: { serverEnv: Record<string, string>; agentEnv: Record<string, string> },
  ): Promise<Fleet> {
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    const front = await ControlPlaneFront.start();
    return new Fleet(database, sql, front, opts.serverEnv, opts.agentEnv);
  }

  /**
   * A replica on the fleet's database; the first one makes the admin (its password is in its data
   * dir), so replicas start one after another.
   */
  async addReplica(name: string, env: Record<string, string> = {}): Promise<ServerReplica> {
    const replica = await startServerReplica(name, {
      DATABASE_URL: this.database.url,
      WRENN_AGENT_URL: '', // no static host: every host registers
      // Every replica must take every other's user tokens.
      WRENN_JWT_SECRET: 'fleet-e2e-secret-that-is-long-enough-for-hs256',
      ...this.serverEnv,
      ...env,
    });
    this.replicas.push(replica);
    if (!this.adminToken) {
      const password = (
        await readFile(path.join(replica.dataDir, 'server', 'admin-password'), 'utf8')
      ).trim();
      const login = await apiCall(replica.url, 'POST', '/v1/auth/login', {
        body: { email: 'admin@wrenn.local', password },
      });
      if (login.status !== 200) throw new Error(`admin login: ${login.status} ${JSON.stringify(login.body)}`);
      this.adminToken = login.body.token as string;
    }
    return replica;
  }

  /** The first replica still running (the API the tests call). */
  get api(): string {
    const alive = this.replicas.find((r) => r.child.exitCode === null && r.child.signalCode === null);
    if (!alive) throw new Error('no control-plane replica is running');
    return alive.url;
  }

  call(
    method: string,
    url: string,
    opts: { body?: unknown; key?: string; bearer?: string; via?: string } = {},
  ): Promise<ApiResult> {
    return apiCall(opts.via ?? this.api, method, url, opts);
  }

  /** Signs a user up (their own team) and makes an API key of that team. */
  async signup(email: string): Promise<Session & { key: string }> {
    const signup = await this.call('POST', '/v1/auth/signup', {
      body: { email, password: 'long enough password' },
    });
    if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${JSON.stringify(signup.body)}`);
    const { token, user, team } = signup.body as {
      token: string;
      user: { id: string };
      team: { id: string };
    };
    const key = await this.call('POST', `/v1/teams/${team.id}/api-keys`, {
      body: { name: 'e2e' },
      bearer: token,
    });
    return { token, userId: user.id, teamId: team.id, key: key.body.key as string };
  }

  devHost(name: string): DevHost {
    let host = this.devHosts.get(name);
    if (!host) this.devHosts.set(name, (host = new DevHost(name)));
    return host;
  }

  /**
   * A host added through the API (`POST /v1/hosts` by `bearer`: the admin's makes a platform host),
   * registered by dev host `name` with its token; resolves once the host is online.
   */
  async addHost(name: string, bearer = this.adminToken): Promise<{ id: string; dev: DevHost }> {
    const added = await this.call('POST', '/v1/hosts', { bearer, body: {} });
    if (added.status !== 201)
      throw new Error(`POST /v1/hosts: ${added.status} ${JSON.stringify(added.body)}`);
    const id = (added.body.host as { id: string }).id;
    const dev = this.devHost(name);
    await dev.remove(); // what a failed run left under this name
    await dev.start({
      ...this.agentEnv,
      WRENN_URL: this.front.url,
      WRENN_REGISTRATION_TOKEN: added.body.registration_token as string,
    });
    await this.waitHost(id, 'online');
    return { id, dev };
  }

  /** Starts a dev host that registered before (no token: it keeps its credentials). */
  restartHost(dev: DevHost): Promise<void> {
    return dev.start({ ...this.agentEnv, WRENN_URL: this.front.url });
  }

  /** Every host as `GET /v1/admin/hosts` shows it. */
  async hosts(): Promise<{ id: string; status: string; address: string | null; kind: string }[]> {
    const res = await this.call('GET', '/v1/admin/hosts', { bearer: this.adminToken });
    if (res.status !== 200) throw new Error(`GET /v1/admin/hosts: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.hosts as { id: string; status: string; address: string | null; kind: string }[];
  }

  async waitHost(id: string, status: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `host ${id} ${status}`,
      async () => ((await this.hosts()).find((h) => h.id === id)?.status === status ? true : undefined),
      timeoutMs,
    );
  }

  /** A sandbox as the API shows it; a stopped one (404 by id) from the `?status=stopped` listing. */
  async sandbox(key: string, id: string): Promise<{ id: string; status: string; host_id: string }> {
    const res = await this.call('GET', `/v1/sandboxes/${id}`, { key });
    if (res.status === 200) return res.body as { id: string; status: string; host_id: string };
    const stopped = await this.call('GET', '/v1/sandboxes?status=stopped', { key });
    const found = (
      stopped.body.sandboxes as { id: string; status: string; host_id: string }[] | undefined
    )?.find((s) => s.id === id);
    if (!found) throw new Error(`GET /v1/sandboxes/${id}: ${res.status} ${JSON.stringify(res.body)}`);
    return found;
  }

  async waitSandbox(key: string, id: string, status: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `sandbox ${id} ${status}`,
      async () => ((await this.sandbox(key, id)).status === status ? true : undefined),
      timeoutMs,
    );
  }

  /** `POST /v1/sandboxes` (expecting 201): never times out on its own, like any sandbox. */
  async createSandbox(key: string): Promise<{ id: string; host_id: string }> {
    const res = await this.call('POST', '/v1/sandboxes', { key, body: { timeout_sec: 0 } });
    if (res.status !== 201) throw new Error(`POST /v1/sandboxes: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as { id: string; host_id: string };
  }

  async exec(key: string, id: string, cmd: string, via?: string): Promise<ApiResult> {
    return this.call('POST', `/v1/sandboxes/${id}/exec`, { key, body: { cmd }, via });
  }

  /** Destroys sandboxes through the API, ignoring those already gone. */
  async destroy(key: string, ids: string[]): Promise<void> {
    await Promise.all(ids.map((id) => this.call('DELETE', `/v1/sandboxes/${id}`, { key })));
  }

  /**
   * A client of a host's agent as a control plane holds one (mutual TLS, a control-plane
   * certificate from the cluster CA in the database): the agent's own view, not the database's.
   */
  async agent(hostId: string, address: string): Promise<AgentClient> {
    const material = await (this.controlPlane ??= this.controlPlaneMaterial());
    const url = `https://${address}`;
    const sessions = new Http2SessionManager(url, {}, controlPlaneClientTlsOptions(material, hostId));
    this.agentSessions.push(sessions);
    return createClient(
      hostagent.HostAgentService,
      // As the control plane's: without compression (an agent gzips what a client accepts).
      createConnectTransport({
        baseUrl: url,
        httpVersion: '2',
        sessionManager: sessions,
        acceptCompression: [],
      }),
    );
  }

  private async controlPlaneMaterial(): Promise<TlsMaterial> {
    const { rows } = await this.sql.query<{ value: { certPem: string; keyPem: string } }>(
      `select value from cluster_keys where name = 'ca'`,
    );
    const ca = rows[0]!.value;
    const keys = await generateKeyPair();
    const certPem = await issueCertificate(ca, {
      publicKeyPem: keys.publicKeyPem,
      identity: { kind: 'control-plane' },
      days: 1,
    });
    return { keyPem: keys.privateKeyPem, certPem, caPem: ca.certPem };
  }

  /** Dev hosts removed (`dev-host.sh rm`), replicas killed and their data dirs removed, the database dropped. */
  async close(): Promise<void> {
    for (const s of this.agentSessions) s.abort();
    const errors: unknown[] = [];
    for (const dev of this.devHosts.values()) {
      // WRENN_E2E_LOG keeps the agents' logs too (their data dirs go with them).
      if (process.env.WRENN_E2E_LOG)
        await appendFile(process.env.WRENN_E2E_LOG, `[dev host ${dev.name}]\n${await dev.log()}`);
      await dev.remove().catch((err: unknown) => errors.push(err));
    }
    for (const r of this.replicas) {
      await r.kill();
      await rm(r.dataDir, { recursive: true, force: true });
    }
    await this.front.close();
    await this.sql.end().catch(() => undefined);
    await this.database.drop().catch((err: unknown) => errors.push(err));
    if (errors.length) throw new AggregateError(errors, 'the fleet was not removed completely');
  }
}
