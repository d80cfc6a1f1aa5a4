import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pollUntil } from '@wrenn/core';
import { FLEET_DEFAULTS } from '../../config.js';
import { startServer, type RunningServer } from '../../server.js';
import { describeOnBackends, postgresOnly } from '../../testing/databases.js';
import { testLogger } from '../../testing/api.js';
import { startLeaderElection } from './leader.js';

// Two control planes on one PostgreSQL: exactly one leads (runs the host monitor and the
// reconciler); when its database session dies, or it stops, the other takes over.

const backends = await postgresOnly();

describeOnBackends('leader election', backends, (backend) => {
  const db = backend.db!;
  const servers: RunningServer[] = [];
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  let admin: pg.Client;

  async function start(): Promise<RunningServer> {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'wrenn-leader-'));
    dirs.push(dataDir);
    const server = await startServer(
      {
        dataDir,
        listenHost: '127.0.0.1',
        listenPort: 0,
        database: { kind: 'postgres', url: db.url },
        agentUrl: '', // no static host: only registered hosts
        logLevel: 'warn',
        fleet: { ...FLEET_DEFAULTS, hostStaleSec: 1, leaderRetryMs: 200 },
      },
      testLogger,
    );
    servers.push(server);
    return server;
  }

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    for (const s of servers) await s.stop().catch(() => undefined);
    await admin?.end();
    await db.drop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const leaders = () => servers.filter((s) => s.isLeader());
  const soleLeader = () =>
    pollUntil(() => (leaders().length === 1 ? leaders()[0] : undefined), {
      timeoutMs: 15_000,
      intervalMs: 50,
    });

  /** A registered host silent for an hour, with a running sandbox: the leader's monitor marks both. */
  async function silentHost(): Promise<{ hostId: string; sandboxId: string }> {
    const { rows: teams } = await admin.query<{ id: string }>(
      `insert into teams (name) values ('t') returning id`,
    );
    const { rows: hosts } = await admin.query<{ id: string }>(
      `insert into hosts (kind, status, address, last_heartbeat_at) values ('platform', 'online', '127.0.0.1:1', now() - interval '1 hour') returning id`,
    );
    const sandboxId = `leadersbx${Math.random().toString(36).slice(2, 10)}`;
    await admin.query(
      `insert into sandboxes (id, team_id, host_id, template, status, vcpus, memory_mb, disk_mb, timeout_sec) values ($1, $2, $3, 'base', 'running', 1, 512, 1024, 0)`,
      [sandboxId, teams[0]!.id, hosts[0]!.id],
    );
    return { hostId: hosts[0]!.id, sandboxId };
  }
  async function markedByMonitor({ hostId, sandboxId }: { hostId: string; sandboxId: string }) {
    return pollUntil(
      async () => {
        const host = await admin.query<{ status: string }>('select status from hosts where id = $1', [
          hostId,
        ]);
        const sbx = await admin.query<{ status: string }>('select status from sandboxes where id = $1', [
          sandboxId,
        ]);
        return host.rows[0]?.status === 'unreachable' && sbx.rows[0]?.status === 'missing' ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
  }

  /** `wrenn server` in a child process (so it can be killed), leading first. */
  async function startChild(): Promise<ChildProcess> {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'wrenn-leader-'));
    dirs.push(dataDir);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(import.meta.dirname, '../../testing/run-server.ts')],
      {
        env: {
          ...process.env,
          DATABASE_URL: db.url,
          WRENN_AGENT_URL: '',
          WRENN_SERVER_LISTEN: '127.0.0.1:0',
          WRENN_DIR: dataDir,
          WRENN_HOST_STALE_SEC: '1',
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('listening')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`the server process exited (${code})`)));
    });
    return child;
  }
  const lockHeld = async () =>
    (
      await admin.query(
        // This test's database only: other tests' servers lead in theirs at the same time.
        `select 1 from pg_locks where locktype = 'advisory' and objid = $1 and granted
         and database = (select oid from pg_database where datname = current_database())`,
        [0x77726e6e],
      )
    ).rowCount === 1;

  it('one server leads and runs the monitor; when its process is killed, another takes over; when that one stops, a third', async () => {
    const child = await startChild();
    expect(
      await pollUntil(async () => ((await lockHeld()) ? true : undefined), {
        timeoutMs: 15_000,
        intervalMs: 50,
      }),
    ).toBe(true);
    const b = await start();
    // b tries every 200 ms and keeps failing while the child leads; the child's monitor runs.
    expect(await markedByMonitor(await silentHost())).toBe(true);
    expect(b.isLeader()).toBe(false);

    // kill -9: PostgreSQL ends the child's session and frees the lock; b takes over.
    child.kill('SIGKILL');
    expect(await soleLeader()).toBe(b);
    expect(await markedByMonitor(await silentHost())).toBe(true);

    // b stops (releasing the lock): c leads.
    const c = await start();
    expect(c.isLeader()).toBe(false);
    await b.stop();
    servers.splice(servers.indexOf(b), 1);
    expect(await soleLeader()).toBe(c);
    expect(await markedByMonitor(await silentHost())).toBe(true);
  });

  it('on PGlite there is one process, and it always leads', async () => {
    const leadership = startLeaderElection({ kind: 'pglite', dir: 'memory://' }, testLogger);
    expect(leadership.isLeader()).toBe(true);
    await leadership.stop();
  });
});
