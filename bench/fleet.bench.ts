// The fleet's costs (issue 11), each next to a floor measured in the same run:
//  1. placement: `placeSandbox` (what `hosts.place` runs on every create) against 1, 10, 100 and
//     1,000 online hosts inserted directly (realistic sizes, 10 live and 20 stopped sandboxes each),
//     on PGlite and on the test PostgreSQL, interleaved with `select 1` and a primary-key lookup;
//  2. heartbeats: a real control plane (`run-server.ts`, its own process, on a fresh database of the
//     test PostgreSQL, no static host) with 1,000 hosts registered through the API as agents do,
//     driven at the rate 1,000 hosts at 30 s make and at a saturating rate; its CPU (/proc), the
//     PostgreSQL backends' CPU and counters per heartbeat, latency; beside an authenticated
//     `GET /v1/sandboxes/{id}` driven the same way.
// Starts a server and uses the test PostgreSQL (scripts/test-postgres.sh): on a shared machine run
// it under the lock the e2e tests take.
// Usage: npm run bench:fleet [-- --hosts 1000 --places 300 --paced-sec 60 --saturate-sec 15
//   --concurrency 16]
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import pg from 'pg';
import { createLogger } from '@wrenn/core';
import { generateKeyPair } from '@wrenn/pki';
import { loadServerConfig, openDatabase } from '@wrenn/server';
// The bench times placement's own function and speaks as the agent does; neither is in a public
// index (apps talk over the wire), and a bench that re-implemented them would time a copy.
// eslint-disable-next-line no-restricted-imports
import { DEFAULT_NEED, placeSandbox } from '../apps/server/src/services/fleet/placement.js';
// eslint-disable-next-line no-restricted-imports
import { ControlPlaneClient, type HeartbeatRequest } from '../apps/agent/src/fleet/control-plane-client.js';
import {
  checkInterrupted,
  DatabaseCost,
  paced,
  phase,
  saturate,
  startServerProcess,
  type PhaseResult,
  type Send,
  type ServerProcess,
} from './load.js';
import { percentiles, printPercentiles } from './stats.js';
import { ADMIN_URL, createBenchDatabase } from './database.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : Number(process.argv[at + 1]) || fallback;
};
const HOSTS = arg('--hosts', 1000);
const PLACES = arg('--places', 300);
const PACED_SEC = arg('--paced-sec', 60);
const SATURATE_SEC = arg('--saturate-sec', 15);
const SATURATE_CONCURRENCY = arg('--concurrency', 16);
const HEARTBEAT_SEC = 30;
const HOST_COUNTS = [1, 10, 100, 1000];
const LIVE_PER_HOST = 10;
const STOPPED_PER_HOST = 20;
/** The leader election's advisory lock (services/fleet/leader.ts): held here, the server follows. */
const LEADER_LOCK = 0x77726e6e;
const logger = createLogger({ name: 'bench-fleet', level: 'warn', pretty: false });
type Db = Awaited<ReturnType<typeof openDatabase>>;

// Sizes a fleet might have: 16–64 cores, 4 GiB per core, 0.5–2 TB of disk; sandboxes of 1–4 vCPUs.
const CORES = [16, 32, 48, 64];
const DISKS = [500_000, 1_000_000, 2_000_000];
const hostSize = (i: number) => {
  const cores = CORES[i % CORES.length]!;
  return { cpu_cores: cores, memory_mb: cores * 4096, disk_mb: DISKS[i % DISKS.length]! };
};
const sandboxSize = (j: number) => ({
  vcpus: 1 + (j % 4),
  memory_mb: 512 * (1 + (j % 8)),
  disk_mb: 4096 * (1 + (j % 3)),
});
const liveStatus = (j: number): 'running' | 'paused' => (j < 8 ? 'running' : 'paused');
const sandboxId = (host: number, j: number, tag: string) =>
  `fb${tag}${String(host).padStart(4, '0')}${String(j).padStart(2, '0')}`;

// ---------------------------------------------------------------------------------------------
// 1. Placement

/** Adds hosts `from`..`to`-1, online platform hosts with their sandboxes (and a few gone hosts). */
async function addHosts(db: Db, teamId: string, from: number, to: number) {
  const tag = randomBytes(3).toString('hex');
  for (let start = from; start < to; start += 100) {
    const end = Math.min(to, start + 100);
    const rows = [];
    for (let i = start; i < end; i++) {
      const size = hostSize(i);
      rows.push({
        kind: 'platform' as const,
        status: 'online' as const,
        address: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}:7070`,
        arch: 'x64',
        agent_version: 'bench',
        ...size,
        load: JSON.stringify({ cpu_pct: 35, memory_used_mb: size.memory_mb / 2, disk_used_mb: 100_000 }),
        running_count: 8,
        paused_count: 2,
        last_heartbeat_at: new Date(),
        registered_at: new Date(),
      });
    }
    const ids = await db.insertInto('hosts').values(rows).returning('id').execute();
    // Every tenth host also has a deleted twin: rows placement must skip.
    await db
      .insertInto('hosts')
      .values(rows.filter((_, k) => k % 10 === 0).map((r) => ({ ...r, status: 'deleted' as const })))
      .execute();
    const sandboxes = ids.flatMap(({ id }, k) =>
      Array.from({ length: LIVE_PER_HOST + STOPPED_PER_HOST }, (_, j) => ({
        id: sandboxId(start + k, j, tag),
        team_id: teamId,
        template: 'base',
        status: j < LIVE_PER_HOST ? liveStatus(j) : ('stopped' as const),
        host_id: id,
        timeout_sec: 300,
        metadata: '{}',
        ...sandboxSize(j),
      })),
    );
    await db.insertInto('sandboxes').values(sandboxes).execute();
  }
  // What autovacuum would have done by the time a fleet this size places sandboxes.
  await sql`vacuum analyze`.execute(db);
}

/** Runs the three, `rounds` times, in an order that rotates each round; the samples of each. */
async function rotate(rounds: number, fns: (() => Promise<unknown>)[], samples?: number[][]) {
  for (let r = 0; r < rounds; r++) {
    checkInterrupted();
    for (let k = 0; k < fns.length; k++) {
      const which = (r + k) % fns.length;
      const t = performance.now();
      await fns[which]!();
      samples?.[which]!.push(performance.now() - t);
    }
  }
}

async function benchPlacement(backend: string, db: Db) {
  const config = loadServerConfig({}).fleet!.placement;
  const teamId = (
    await db.insertInto('teams').values({ name: 'bench' }).returning('id').executeTakeFirstOrThrow()
  ).id;
  const rows: [string, number[], string][] = [];
  let have = 0;
  for (const n of HOST_COUNTS) {
    await addHosts(db, teamId, have, n);
    have = n;
    const oneHost = (await db.selectFrom('hosts').select('id').limit(1).executeTakeFirstOrThrow()).id;
    const fns = [
      () => placeSandbox(db, config, teamId, DEFAULT_NEED),
      () => db.selectFrom('hosts').select('id').where('id', '=', oneHost).executeTakeFirstOrThrow(),
      () => sql`select 1`.execute(db),
    ];
    console.error(`placement on ${backend}, ${n} hosts: 20 warm-ups, then ${PLACES} rounds…`);
    await rotate(20, fns);
    const samples: number[][] = [[], [], []];
    await rotate(PLACES, fns, samples);
    rows.push(
      [`${n} hosts: place()`, samples[0]!, 'ms'],
      [`${n} hosts: pk lookup of one host (baseline)`, samples[1]!, 'ms'],
      [`${n} hosts: select 1 (baseline)`, samples[2]!, 'ms'],
    );
  }
  // The largest fleet again with an index made for placement's usage query (vacuumed, as above, so
  // the index can answer without visiting the table).
  await explainUsage(backend, db, config.pausedWeight, 'as built');
  await sql.raw(PROPOSED_INDEX).execute(db);
  await sql`vacuum analyze sandboxes`.execute(db);
  const oneHost = (await db.selectFrom('hosts').select('id').limit(1).executeTakeFirstOrThrow()).id;
  const fns = [
    () => placeSandbox(db, config, teamId, DEFAULT_NEED),
    () => db.selectFrom('hosts').select('id').where('id', '=', oneHost).executeTakeFirstOrThrow(),
  ];
  console.error(`placement on ${backend}, ${have} hosts, with the proposed index…`);
  await rotate(20, fns);
  const samples: number[][] = [[], []];
  await rotate(PLACES, fns, samples);
  rows.push(
    [`${have} hosts: place(), proposed index`, samples[0]!, 'ms'],
    [`${have} hosts: pk lookup of one host (baseline)`, samples[1]!, 'ms'],
  );
  await explainUsage(backend, db, config.pausedWeight, 'with the proposed index');
  return rows;
}

/** Lets `host_id = $1 or moving_to = $1` be two index scans instead of one of the whole table. */
const PROPOSED_HEARTBEAT_INDEX =
  'create index sandboxes_moving_to on sandboxes (moving_to) where moving_to is not null';

/** Live sandboxes by host, with what placement sums: the usage query reads only this index. */
const PROPOSED_INDEX = `create index sandboxes_live_by_host on sandboxes (host_id)
  include (status, vcpus, memory_mb, disk_mb) where status in ('pending', 'running', 'paused')`;

/**
 * EXPLAIN ANALYZE of placement's heaviest query at the largest fleet (a copy of its shape: the
 * online hosts' ids as an IN list), and of the same sums joined to `hosts` instead of an IN list.
 */
async function explainUsage(backend: string, db: Db, pausedWeight: number, label: string) {
  const hostIds = (await db.selectFrom('hosts').select('id').where('status', '=', 'online').execute()).map(
    (r) => r.id,
  );
  const weight = (column: string, status = 'status') =>
    sql<number>`sum(case when ${sql.ref(status)} = 'paused' then ${sql.ref(column)} * ${pausedWeight}::float8 else ${sql.ref(column)} end)`;
  const inList = await db
    .selectFrom('sandboxes')
    .select([
      'host_id',
      weight('vcpus').as('cpu'),
      weight('memory_mb').as('memory'),
      sql`sum(disk_mb)`.as('disk'),
    ])
    .where('host_id', 'in', hostIds)
    .where('status', 'in', ['pending', 'running', 'paused'])
    .groupBy('host_id')
    .explain(undefined, sql`analyze, buffers`);
  const joined = await db
    .selectFrom('sandboxes')
    .innerJoin('hosts', 'hosts.id', 'sandboxes.host_id')
    .select([
      'sandboxes.host_id',
      weight('sandboxes.vcpus', 'sandboxes.status').as('cpu'),
      weight('sandboxes.memory_mb', 'sandboxes.status').as('memory'),
      sql`sum(sandboxes.disk_mb)`.as('disk'),
    ])
    .where('hosts.status', '=', 'online')
    .where('hosts.kind', '=', 'platform')
    .where('sandboxes.status', 'in', ['pending', 'running', 'paused'])
    .groupBy('sandboxes.host_id')
    .explain(undefined, sql`analyze, buffers`);
  for (const [form, plan] of [
    ['IN list (as placement.ts sends it)', inList],
    ['joined to hosts', joined],
  ] as const) {
    console.error(`
${backend}, ${hostIds.length} hosts, ${label}: usage query, ${form}:`);
    // The IN list's 1,000 ids would fill the screen.
    for (const line of plan) console.error(`  ${String(Object.values(line)[0]).slice(0, 150)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Heartbeats

interface RegisteredHost {
  id: string;
  accessToken: string;
  index: number;
}

/**
 * Registration as an agent does it (apps/agent/src/fleet/registration.ts): a key pair made on the
 * host, its public key and facts sent with the one-time token an admin asked for; 8 at a time.
 */
async function registerHosts(url: string, token: string, agentApi: ControlPlaneClient) {
  const hosts: RegisteredHost[] = [];
  let nextHost = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (nextHost < HOSTS) {
        checkInterrupted();
        const index = nextHost++;
        const res = await fetch(`${url}/v1/hosts`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: '{}',
        });
        if (res.status !== 201) throw new Error(`POST /v1/hosts: ${res.status} ${await res.text()}`);
        const { registration_token } = (await res.json()) as { registration_token: string };
        const keys = await generateKeyPair();
        const answer = await agentApi.register({
          registration_token,
          arch: 'x64',
          ...hostSize(index),
          address: `127.0.0.1:${20_000 + index}`,
          public_key: keys.publicKeyPem,
          agent_version: 'bench',
        });
        hosts.push({ id: answer.host_id, accessToken: answer.access_token, index });
      }
    }),
  );
  return hosts;
}

/**
 * Each host's sandboxes, as rows the control plane knows, and the heartbeat that reports exactly
 * what it has on record (nothing to reconcile, nothing to destroy on a host that is not there).
 */
async function recordSandboxes(benchDb: pg.Client, hosts: RegisteredHost[]) {
  const teamId = (
    await benchDb.query<{ team_id: string }>(
      "select m.team_id from team_members m join users u on u.id = m.user_id where u.email = 'admin@wrenn.local'",
    )
  ).rows[0]!.team_id;
  const reports = new Map<string, HeartbeatRequest>();
  const tag = randomBytes(3).toString('hex');
  const ids: string[] = [];
  const hostIds: string[] = [];
  const statuses: string[] = [];
  const sizes: number[][] = [[], [], []];
  for (const host of hosts) {
    const size = hostSize(host.index);
    const live: { id: string; status: string }[] = [];
    for (let j = 0; j < LIVE_PER_HOST + STOPPED_PER_HOST; j++) {
      const id = sandboxId(host.index, j, tag);
      const status = j < LIVE_PER_HOST ? liveStatus(j) : 'stopped';
      if (status !== 'stopped') live.push({ id, status });
      ids.push(id);
      hostIds.push(host.id);
      statuses.push(status);
      const s = sandboxSize(j);
      sizes[0]!.push(s.vcpus);
      sizes[1]!.push(s.memory_mb);
      sizes[2]!.push(s.disk_mb);
    }
    reports.set(host.id, {
      capacity: size,
      load: { cpu_pct: 35.5, memory_used_mb: Math.floor(size.memory_mb / 2), disk_used_mb: 120_000 },
      sandboxes: live,
    });
  }
  await benchDb.query(
    `insert into sandboxes (id, team_id, template, status, host_id, vcpus, memory_mb, disk_mb, timeout_sec)
     select id, $2, 'base', status, host_id, vcpus, memory_mb, disk_mb, 300
     from unnest($1::text[], $3::uuid[], $4::text[], $5::int[], $6::int[], $7::int[])
       as t(id, host_id, status, vcpus, memory_mb, disk_mb)`,
    [ids, teamId, hostIds, statuses, sizes[0], sizes[1], sizes[2]],
  );
  await benchDb.query('analyze');
  return { reports, liveIds: ids.filter((_, k) => statuses[k] !== 'stopped') };
}

// Longer than ~80 lines on purpose: set-up, then the run's phases in order, a few lines each.
async function benchHeartbeats() {
  const database = await createBenchDatabase();
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  const benchDb = new pg.Client({ connectionString: database.url });
  let server: ServerProcess | undefined;
  try {
    await admin.connect();
    await benchDb.connect();
    // Taken before the server starts, so it never leads: no host monitor, no reconciler dialling
    // the 1,000 hosts (their addresses are fake). What remains is the server's cost per request.
    await benchDb.query('select pg_advisory_lock($1)', [LEADER_LOCK]);
    const lockPid = (await benchDb.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    server = await startServerProcess(database.url);
    const url = server.url;
    // Had the server found another lock to take, it would lead and its reconciler would run. (Its
    // first try is at start; a second later it has been made.)
    await sleep(1000);
    const { rows: leaders } = await benchDb.query<{ n: string }>(
      `select count(*) as n from pg_locks where locktype = 'advisory' and granted and pid <> pg_backend_pid()
         and database = (select oid from pg_database where datname = current_database())`,
    );
    if (Number(leaders[0]!.n) > 0)
      throw new Error('the server took an advisory lock: LEADER_LOCK here no longer matches leader.ts');
    const password = (await readFile(path.join(server.dataDir, 'server', 'admin-password'), 'utf8')).trim();
    const apiKey = (await readFile(path.join(server.dataDir, 'server', 'admin-api-key'), 'utf8')).trim();
    const login = await fetch(`${url}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'admin@wrenn.local', password }),
    });
    const { token } = (await login.json()) as { token: string };

    const agentApi = new ControlPlaneClient(url, 30_000);
    console.error(`registering ${HOSTS} hosts through the API…`);
    const regStart = performance.now();
    const hosts = await registerHosts(url, token, agentApi);
    const registerMs = performance.now() - regStart;
    const { reports, liveIds } = await recordSandboxes(benchDb, hosts);

    const heartbeat =
      (empty = false): Send =>
      async (k) => {
        const host = hosts[k % hosts.length]!;
        const report = reports.get(host.id)!;
        await agentApi.heartbeat(host.accessToken, empty ? { ...report, sandboxes: [] } : report);
      };
    // The floor: an authenticated request that does one lookup (the key) and reads one row.
    const getSandbox: Send = async (k) => {
      const id = liveIds[k % liveIds.length]!;
      const res = await fetch(`${url}/v1/sandboxes/${id}`, { headers: { 'x-api-key': apiKey } });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`GET /v1/sandboxes/${id}: ${res.status}`);
    };

    const dbCost = new DatabaseCost(admin, database.name, [lockPid]);
    const rate = HOSTS / HEARTBEAT_SEC;
    // Every host once before measuring: connections open, JIT warm, rows cached.
    await paced(rate * 4, HEARTBEAT_SEC / 4, heartbeat(), [], { n: 0 });
    const results: PhaseResult[] = [];
    results.push(await phase('idle (no requests)', server, dbCost, () => sleep(10_000)));
    const pacedName = `${rate.toFixed(1)}/s`;
    results.push(
      await phase(`heartbeat, ${pacedName} (${HOSTS} hosts / ${HEARTBEAT_SEC} s)`, server, dbCost, (l, e) =>
        paced(rate, PACED_SEC, heartbeat(), l, e),
      ),
    );
    results.push(
      await phase(`GET /v1/sandboxes/{id}, ${pacedName} (baseline)`, server, dbCost, (l, e) =>
        paced(rate, PACED_SEC / 2, getSandbox, l, e),
      ),
    );
    results.push(
      await phase(`heartbeat, saturating (${SATURATE_CONCURRENCY} at a time)`, server, dbCost, (l, e) =>
        saturate(SATURATE_CONCURRENCY, SATURATE_SEC, heartbeat(), l, e),
      ),
    );
    results.push(
      await phase(`GET /v1/sandboxes/{id}, saturating (baseline)`, server, dbCost, (l, e) =>
        saturate(SATURATE_CONCURRENCY, SATURATE_SEC, getSandbox, l, e),
      ),
    );
    results.push(
      await phase(`heartbeat, empty list, saturating`, server, dbCost, (l, e) =>
        saturate(SATURATE_CONCURRENCY, SATURATE_SEC, heartbeat(true), l, e),
      ),
    );
    // The heartbeat's reconciliation reads `host_id = $1 or moving_to = $1`; with no index on
    // moving_to that is a scan of every sandbox row. The same rate again with one, where the
    // column exists, to size what such an index would save.
    const moving = await benchDb.query(
      "select 1 from information_schema.columns where table_name = 'sandboxes' and column_name = 'moving_to'",
    );
    if (moving.rowCount) {
      await benchDb.query(PROPOSED_HEARTBEAT_INDEX);
      await benchDb.query('analyze sandboxes');
      results.push(
        await phase(`heartbeat, ${pacedName}, proposed moving_to index`, server, dbCost, (l, e) =>
          paced(rate, PACED_SEC / 2, heartbeat(), l, e),
        ),
      );
    }
    return { results, registerMs };
  } finally {
    await server?.stop();
    await benchDb.end().catch(() => undefined);
    await admin.end().catch(() => undefined);
    await database.drop();
  }
}

function printHeartbeats(results: PhaseResult[], registerMs: number) {
  const idle = results[0]!;
  const idleServerPerSec = idle.serverCpuMs / idle.seconds;
  const idlePgPerSec = idle.pgCpuMs / idle.seconds;
  printPercentiles(
    `Heartbeats: one control plane (follower), ${HOSTS} registered hosts, PostgreSQL — latency (ms)`,
    results.slice(1).map((r) => [r.name, r.latencies, 'ms'] as [string, number[], string]),
  );
  console.log(
    `\nCost per request (CPU ms; server's idle ${idleServerPerSec.toFixed(2)} ms/s and PostgreSQL's ${idlePgPerSec.toFixed(2)} ms/s subtracted)`,
  );
  console.log(
    `${'phase'.padEnd(52)} ${'req/s'.padStart(7)} ${'server'.padStart(7)} ${'pg cpu'.padStart(7)} ${'pg act'.padStart(7)} ${'client'.padStart(7)} ${'xacts'.padStart(6)} ${'blks'.padStart(6)} ${'tuples'.padStart(7)} ${'errs'.padStart(5)}`,
  );
  for (const r of results.slice(1)) {
    const n = r.requests;
    const server = (r.serverCpuMs - idleServerPerSec * r.seconds) / n;
    const pgCpu = (r.pgCpuMs - idlePgPerSec * r.seconds) / n;
    const tuples = r.pg.tup_returned + r.pg.tup_fetched + r.pg.tup_inserted + r.pg.tup_updated;
    console.log(
      `${r.name.padEnd(52)} ${(n / r.seconds).toFixed(1).padStart(7)} ${server.toFixed(3).padStart(7)} ${pgCpu.toFixed(3).padStart(7)} ${(r.pg.active_time / n).toFixed(3).padStart(7)} ${(r.clientCpuMs / n).toFixed(3).padStart(7)} ${(r.pg.xact_commit / n).toFixed(2).padStart(6)} ${((r.pg.blks_hit + r.pg.blks_read) / n).toFixed(1).padStart(6)} ${(tuples / n).toFixed(1).padStart(7)} ${String(r.errors).padStart(5)}`,
    );
  }
  const pacedHb = results[1]!;
  const perHb = (pacedHb.serverCpuMs - idleServerPerSec * pacedHb.seconds) / pacedHb.requests;
  const pgPerHb = (pacedHb.pgCpuMs - idlePgPerSec * pacedHb.seconds) / pacedHb.requests;
  const rate = HOSTS / HEARTBEAT_SEC;
  console.log(
    `\n${HOSTS} hosts at ${HEARTBEAT_SEC} s: server ${((perHb * rate) / 10).toFixed(2)} % of one core, PostgreSQL ${((pgPerHb * rate) / 10).toFixed(2)} % (idle server ${(idleServerPerSec / 10).toFixed(2)} %, idle PostgreSQL backends ${(idlePgPerSec / 10).toFixed(2)} %)`,
  );
  const sat = results[3]!;
  console.log(
    `saturating: ${(sat.requests / sat.seconds).toFixed(0)} heartbeats/s (p50 ${percentiles(sat.latencies).p50.toFixed(1)} ms) on this 2-core machine, load generator included`,
  );
  console.log(`registering ${HOSTS} hosts through the API took ${(registerMs / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------------------------------------

const load0 = os.loadavg();
const placement: [string, number[], string][] = [];
{
  const lite = await openDatabase({ kind: 'pglite', dir: 'memory://' }, logger);
  try {
    placement.push(
      ...(await benchPlacement('PGlite', lite)).map(
        ([n, s, u]) => [`PGlite ${n}`, s, u] as [string, number[], string],
      ),
    );
  } finally {
    await lite.destroy();
  }
  const target = await createBenchDatabase();
  try {
    const db = await openDatabase({ kind: 'postgres', url: target.url }, logger);
    try {
      placement.push(
        ...(await benchPlacement('PostgreSQL', db)).map(
          ([n, s, u]) => [`PostgreSQL ${n}`, s, u] as [string, number[], string],
        ),
      );
    } finally {
      await db.destroy();
    }
  } finally {
    await target.drop();
  }
}
const { results, registerMs } = await benchHeartbeats();
printPercentiles(
  `Placement: place() vs the database's floor, ${PLACES} rounds each, ${LIVE_PER_HOST} live + ${STOPPED_PER_HOST} stopped sandboxes per host (ms)`,
  placement,
  3,
);
printHeartbeats(results, registerMs);
const load1 = os.loadavg();
console.log(
  `load average (1 min) at the start ${load0[0]!.toFixed(2)}, at the end ${load1[0]!.toFixed(2)} (${os.availableParallelism()} cores)`,
);
