// What the load benches share: a control plane in a process of its own, and one measured phase of
// requests against it, with the CPU the server and PostgreSQL spent on it (bench/fleet.bench.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

const REPO = path.resolve(import.meta.dirname, '..');

// Ctrl-C / SIGTERM: finish the current request, then clean up like any other failure.
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (interrupted = true));
export const checkInterrupted = () => {
  if (interrupted) throw new Error('interrupted');
};

export interface ServerProcess {
  url: string;
  pid: number;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * `databaseUrl` undefined: embedded PGlite in the server's data dir (`wrenn up`'s default). `env` adds
 * to or overrides the server's settings (e.g. WRENN_AGENT_URL, WRENN_METRICS_LISTEN).
 */
export async function startServerProcess(
  databaseUrl: string | undefined,
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'wrenn-bench-fleet-'));
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', 'apps/server/src/testing/run-server.ts'],
    {
      cwd: REPO,
      env: {
        ...inherited,
        WRENN_DIR: dataDir,
        WRENN_SERVER_LISTEN: '127.0.0.1:0',
        ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
        WRENN_AGENT_URL: '',
        WRENN_METRICS_LISTEN: 'off',
        LOG_LEVEL: 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${out}`)), 60_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const match = /listening (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}): ${out}`));
    });
  });
  child.stdout!.resume();
  return {
    url,
    pid: child.pid!,
    dataDir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))]);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const CLOCK_TICK_MS = 10; // USER_HZ is 100 on Linux (getconf CLK_TCK)

/** utime + stime of a process (all its threads), in ms; undefined when it is gone. */
export async function cpuMs(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS;
}

const PG_COUNTERS = [
  'xact_commit',
  'xact_rollback',
  'blks_hit',
  'blks_read',
  'tup_returned',
  'tup_fetched',
  'tup_inserted',
  'tup_updated',
  'active_time',
] as const;
export type PgCounters = Record<(typeof PG_COUNTERS)[number], number>;

/**
 * What the PostgreSQL backends of one database cost: their CPU (polled from /proc, so a backend
 * that ends between polls loses its last half second) and pg_stat_database's counters. Reads
 * through a connection to another database, so its own queries count nowhere.
 */
export class DatabaseCost {
  private startCpu = new Map<number, number>();
  private lastCpu = new Map<number, number>();
  private polling: Promise<void> | undefined;
  private running = false;
  private counters0: PgCounters | undefined;

  constructor(
    private readonly admin: pg.Client,
    private readonly database: string,
    private readonly excludePids: number[],
  ) {}

  private async pids(): Promise<number[]> {
    const { rows } = await this.admin.query<{ pid: number }>(
      'select pid from pg_stat_activity where datname = $1 and not (pid = any($2::int[]))',
      [this.database, this.excludePids],
    );
    return rows.map((r) => r.pid);
  }

  private async counters(): Promise<PgCounters> {
    const { rows } = await this.admin.query<Record<string, string>>(
      `select ${PG_COUNTERS.join(', ')} from pg_stat_database where datname = $1`,
      [this.database],
    );
    return Object.fromEntries(PG_COUNTERS.map((c) => [c, Number(rows[0]![c])])) as PgCounters;
  }

  private async poll(first: boolean) {
    for (const pid of await this.pids()) {
      const ms = await cpuMs(pid);
      if (ms === undefined) continue;
      // A backend born during the phase: all of its CPU is the phase's.
      if (!this.startCpu.has(pid)) this.startCpu.set(pid, first ? ms : 0);
      this.lastCpu.set(pid, ms);
    }
  }

  async start() {
    this.startCpu.clear();
    this.lastCpu.clear();
    this.counters0 = await this.counters();
    await this.poll(true);
    this.running = true;
    this.polling = (async () => {
      while (this.running) {
        await sleep(500);
        await this.poll(false);
      }
    })();
  }

  async stop(): Promise<{ cpuMs: number; counters: PgCounters }> {
    await this.poll(false);
    this.running = false;
    await this.polling;
    let cpu = 0;
    for (const [pid, last] of this.lastCpu) cpu += last - this.startCpu.get(pid)!;
    // A backend reports its counters when idle, but one that reported less than a second ago
    // waits 10 s more (PGSTAT_IDLE_INTERVAL): read them after that.
    await sleep(11_000);
    const end = await this.counters();
    const counters = Object.fromEntries(
      PG_COUNTERS.map((c) => [c, end[c] - this.counters0![c]]),
    ) as PgCounters;
    return { cpuMs: cpu, counters };
  }
}

export interface PhaseResult {
  name: string;
  requests: number;
  errors: number;
  seconds: number;
  latencies: number[];
  serverCpuMs: number;
  clientCpuMs: number;
  pgCpuMs: number;
  pg: PgCounters;
}

/** One request; throws on anything but success. */
export type Send = (k: number) => Promise<void>;

/** `send` at `rate` a second for `seconds`, open loop (a slow answer does not delay the next). */
export async function paced(
  rate: number,
  seconds: number,
  send: Send,
  latencies: number[],
  errors: { n: number },
) {
  const total = Math.round(rate * seconds);
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let k = 0; k < total; k++) {
    checkInterrupted();
    const wait = start + (k * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    const t = performance.now();
    inflight.push(
      send(k).then(
        () => void latencies.push(performance.now() - t),
        (err: unknown) => {
          if (errors.n++ === 0) console.error('request failed:', err);
        },
      ),
    );
  }
  await Promise.all(inflight);
}

/** `concurrency` clients sending back to back for `seconds` (closed loop). */
export async function saturate(
  concurrency: number,
  seconds: number,
  send: Send,
  latencies: number[],
  errors: { n: number },
) {
  const until = performance.now() + seconds * 1000;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until && !interrupted) {
        const t = performance.now();
        try {
          await send(next++);
          latencies.push(performance.now() - t);
        } catch (err) {
          if (errors.n++ === 0) console.error('request failed:', err);
        }
      }
    }),
  );
}

export async function phase(
  name: string,
  server: ServerProcess,
  dbCost: DatabaseCost,
  drive: (latencies: number[], errors: { n: number }) => Promise<void>,
): Promise<PhaseResult> {
  console.error(`${name}…`);
  await sleep(2000); // the previous phase's stragglers and counters settle
  const latencies: number[] = [];
  const errors = { n: 0 };
  await dbCost.start();
  const cpu0 = (await cpuMs(server.pid))!;
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  await drive(latencies, errors);
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = (await cpuMs(server.pid))!;
  const client = process.cpuUsage(client0);
  const { cpuMs: pgCpuMs, counters } = await dbCost.stop();
  checkInterrupted();
  return {
    name,
    requests: latencies.length + errors.n,
    errors: errors.n,
    seconds,
    latencies,
    serverCpuMs: cpu1 - cpu0,
    clientCpuMs: (client.user + client.system) / 1000,
    pgCpuMs,
    pg: counters,
  };
}
