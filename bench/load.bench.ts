// The load run (issue 14): N concurrent API clients (default 200) for a while (default 5 min) on
// loopback against a real control plane in a process of its own, with a real agent behind it (gVisor:
// run it under the e2e lock), in a mix of what clients do most: list sandboxes, get one, list
// templates, list their teams (a session token), E2B's list; and a few creates and kills by a small,
// fixed number of lifecycle clients, so the sandbox count stays bounded (2 cores). Each client sends
// its next request when the last one answered (closed loop). Baseline in the same run: a request for
// a route that does not exist (admission, routing, a JSON 404; no auth, no database).
// Reports p50/p95/p99 per operation, error rate, requests/s, and the server's memory (RSS from /proc,
// V8 heap from its own /metrics) sampled through the run; stops by itself and removes what it made.
// Usage: flock /tmp/wrenn-e2e.lock npm run load -- [--clients 200] [--duration 300] [--teams 4]
//          [--lifecycle 2] [--no-agent] [--postgres]
import { readFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgentProcess, type AgentProcess } from '../test/e2e/support/agent-process.js';
import { createBenchDatabase } from './database.js';
import { checkInterrupted, cpuMs, startServerProcess, type ServerProcess } from './load.js';
import { percentiles } from './stats.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`${name}: expected a number, got ${process.argv[at + 1]}`);
  return value;
};
const flag = (name: string) => process.argv.includes(name);
const clients = arg('--clients', 200);
const durationSec = arg('--duration', 300);
const teamCount = Math.max(1, arg('--teams', 4));
const withAgent = !flag('--no-agent');
const lifecycleClients = withAgent ? Math.min(arg('--lifecycle', 2), clients) : 0;
const usePostgres = flag('--postgres');
const SAMPLE_EVERY_MS = 5000;
// A client whose request has not answered in this long counts it as an error and goes on.
const REQUEST_TIMEOUT_MS = 60_000;

interface Team {
  key: string;
  token: string;
  teamId: string;
  /** A sandbox of the team's that lives through the run (with an agent). */
  sandboxId?: string;
}

interface Operation {
  name: string;
  /** Share of the read clients' requests (lifecycle clients do only create + kill). */
  weight: number;
  /** The status that counts as success. */
  ok: number;
  send(base: string, team: Team): Promise<Response>;
}

const keyed = (team: Team) => ({ 'x-api-key': team.key });
const OPERATIONS: Operation[] = [
  {
    name: 'baseline: GET /v1/no-such-route (404)',
    weight: 10,
    ok: 404,
    send: (base) => fetch(`${base}/v1/no-such-route`),
  },
  {
    name: 'GET /v1/sandboxes (list)',
    weight: 25,
    ok: 200,
    send: (base, team) => fetch(`${base}/v1/sandboxes`, { headers: keyed(team) }),
  },
  ...(withAgent
    ? [
        {
          name: 'GET /v1/sandboxes/{id}',
          weight: 25,
          ok: 200,
          send: (base: string, team: Team) =>
            fetch(`${base}/v1/sandboxes/${team.sandboxId}`, { headers: keyed(team) }),
        },
      ]
    : []),
  // The template list asks an agent for its images.
  ...(withAgent
    ? [
        {
          name: 'GET /v1/templates',
          weight: 15,
          ok: 200,
          send: (base: string, team: Team) => fetch(`${base}/v1/templates`, { headers: keyed(team) }),
        },
      ]
    : []),
  {
    name: 'GET /v1/teams (session token)',
    weight: 10,
    ok: 200,
    send: (base, team) => fetch(`${base}/v1/teams`, { headers: { authorization: `Bearer ${team.token}` } }),
  },
  {
    name: 'GET /v2/sandboxes (E2B list)',
    weight: 15,
    ok: 200,
    send: (base, team) => fetch(`${base}/v2/sandboxes`, { headers: keyed(team) }),
  },
];
const CREATE = 'POST /v1/sandboxes (create)';
const KILL = 'DELETE /v1/sandboxes/{id} (kill)';

class Recorder {
  readonly latencies = new Map<string, number[]>();
  readonly errors = new Map<string, number>();
  readonly firstError = new Map<string, string>();
  /** Requests answered (any outcome) per second of the run. */
  readonly perSecond: number[] = [];
  constructor(private readonly t0: number) {}

  record(name: string, ms: number, error?: string) {
    const second = Math.floor((performance.now() - this.t0) / 1000);
    this.perSecond[second] = (this.perSecond[second] ?? 0) + 1;
    if (error === undefined) {
      let list = this.latencies.get(name);
      if (!list) this.latencies.set(name, (list = []));
      list.push(ms);
      return;
    }
    this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
    if (!this.firstError.has(name)) this.firstError.set(name, error);
  }
}

/** One request, timed; `ok` decides what counts as success. Never throws. */
async function timedRequest(
  rec: Recorder,
  name: string,
  ok: number,
  request: () => Promise<Response>,
): Promise<{ status: number; text: string } | undefined> {
  const t = performance.now();
  try {
    const res = await request();
    // The body is read before the clock stops: a client waits for all of it.
    const text = await res.text();
    const ms = performance.now() - t;
    if (res.status !== ok) {
      rec.record(name, ms, `${res.status} ${text.slice(0, 200)}`);
      return undefined;
    }
    rec.record(name, ms);
    return { status: res.status, text };
  } catch (err) {
    rec.record(name, performance.now() - t, String(err));
    return undefined;
  }
}

const withTimeout = (init: () => Promise<Response>) => () =>
  Promise.race([
    init(),
    sleep(REQUEST_TIMEOUT_MS).then(() => {
      throw new Error(`no answer in ${REQUEST_TIMEOUT_MS / 1000} s`);
    }),
  ]);

async function readClient(base: string, team: Team, until: number, rec: Recorder, seed: number) {
  const total = OPERATIONS.reduce((n, o) => n + o.weight, 0);
  let state = seed * 2654435761;
  while (performance.now() < until) {
    checkInterrupted();
    // A small deterministic generator: every run sends the same mix.
    state = (state * 1103515245 + 12345) >>> 0;
    let pick = state % total;
    const op = OPERATIONS.find((o) => (pick -= o.weight) < 0)!;
    await timedRequest(
      rec,
      op.name,
      op.ok,
      withTimeout(() => op.send(base, team)),
    );
  }
}

/** Create a sandbox, kill it, again: at most one of this client's sandboxes exists at a time. */
async function lifecycleClient(base: string, team: Team, until: number, rec: Recorder) {
  while (performance.now() < until) {
    checkInterrupted();
    const made = await timedRequest(
      rec,
      CREATE,
      201,
      withTimeout(() =>
        fetch(`${base}/v1/sandboxes`, {
          method: 'POST',
          headers: { ...keyed(team), 'content-type': 'application/json' },
          body: JSON.stringify({ timeout_sec: 0 }),
        }),
      ),
    );
    if (!made) {
      await sleep(1000);
      continue;
    }
    const { id } = JSON.parse(made.text) as { id: string };
    await timedRequest(
      rec,
      KILL,
      204,
      withTimeout(() => fetch(`${base}/v1/sandboxes/${id}`, { method: 'DELETE', headers: keyed(team) })),
    );
  }
}

interface MemorySample {
  atSec: number;
  rssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  /** The server's longest event-loop stall since the previous sample (its own histogram, reset per scrape). */
  loopLagMaxMs: number;
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024;
}

async function sampleMemory(server: ServerProcess, metricsUrl: string, t0: number): Promise<MemorySample> {
  const text = await (await fetch(metricsUrl)).text();
  const raw = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    atSec: Math.round((performance.now() - t0) / 1000),
    rssMb: await rssMb(server.pid),
    heapUsedMb: raw('nodejs_heap_size_used_bytes') / 1024 / 1024,
    heapTotalMb: raw('nodejs_heap_size_total_bytes') / 1024 / 1024,
    loopLagMaxMs: raw('nodejs_eventloop_lag_max_seconds') * 1000,
  };
}

/** Least-squares slope of `y` over `x`, per minute when x is in seconds. */
function slopePerMinute(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return (num / den) * 60;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function call(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
) {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

async function makeTeams(base: string): Promise<Team[]> {
  const teams: Team[] = [];
  const run = Date.now().toString(36);
  for (let i = 0; i < teamCount; i++) {
    const signup = await call(
      base,
      'POST',
      '/v1/auth/signup',
      {},
      {
        email: `load-${run}-${i}@example.com`,
        password: 'long enough password',
      },
    );
    if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${JSON.stringify(signup.body)}`);
    const { token, team } = signup.body as { token: string; team: { id: string } };
    const key = await call(
      base,
      'POST',
      `/v1/teams/${team.id}/api-keys`,
      { authorization: `Bearer ${token}` },
      {
        name: 'load',
      },
    );
    if (key.status !== 201) throw new Error(`api key: ${key.status} ${JSON.stringify(key.body)}`);
    teams.push({ key: key.body.key as string, token, teamId: team.id });
  }
  return teams;
}

function report(
  rec: Recorder,
  seconds: number,
  memory: MemorySample[],
  serverCpuMs: number,
  clientCpuMs: number,
  serverCounted: number,
  serverMeans: [string, number][],
) {
  const names = [...OPERATIONS.map((o) => o.name), ...(lifecycleClients ? [CREATE, KILL] : [])];
  console.log(
    `\n${clients} clients (${lifecycleClients} of them create + kill), ${seconds.toFixed(0)} s, ${teamCount} teams, ` +
      `${usePostgres ? 'PostgreSQL' : 'PGlite'}, ${withAgent ? 'a real agent' : 'no agent'}`,
  );
  console.log(
    `${'operation'.padEnd(40)} ${'ok'.padStart(7)} ${'errors'.padStart(6)} ${'req/s'.padStart(7)} ${'p50'.padStart(8)} ${'p95'.padStart(8)} ${'p99'.padStart(8)}  ms`,
  );
  let total = 0;
  let errors = 0;
  for (const name of names) {
    const samples = rec.latencies.get(name) ?? [];
    const failed = rec.errors.get(name) ?? 0;
    total += samples.length + failed;
    errors += failed;
    const { p50, p95, p99 } = percentiles(samples);
    const f = (v: number) => v.toFixed(1).padStart(8);
    console.log(
      `${name.padEnd(40)} ${String(samples.length).padStart(7)} ${String(failed).padStart(6)} ${((samples.length + failed) / seconds).toFixed(1).padStart(7)} ${f(p50)} ${f(p95)} ${f(p99)}`,
    );
  }
  const all = percentiles(names.flatMap((n) => rec.latencies.get(n) ?? []));
  console.log(
    `${'all'.padEnd(40)} ${String(total - errors).padStart(7)} ${String(errors).padStart(6)} ${(total / seconds).toFixed(1).padStart(7)} ${all.p50.toFixed(1).padStart(8)} ${all.p95.toFixed(1).padStart(8)} ${all.p99.toFixed(1).padStart(8)}`,
  );
  console.log(`error rate: ${((errors / Math.max(1, total)) * 100).toFixed(3)} % (${errors} of ${total})`);
  for (const [name, first] of rec.firstError) console.log(`  first error of ${name}: ${first}`);
  const perSecond = Array.from({ length: Math.floor(seconds) }, (_, i) => rec.perSecond[i] ?? 0);
  const stalled = perSecond.filter((n) => n === 0).length;
  const rps = percentiles(perSecond);
  console.log(
    `requests/s: mean ${(total / seconds).toFixed(1)}, per-second p50 ${rps.p50}, min ${Math.min(...perSecond)}; ` +
      `${stalled} s with no answer at all`,
  );
  console.log(
    `client CPU: ${(clientCpuMs / 1000).toFixed(1)} s (${(clientCpuMs / 10 / seconds).toFixed(0)} % of one core)`,
  );
  console.log(
    `server event-loop stalls: longest ${Math.max(...memory.map((m) => m.loopLagMaxMs)).toFixed(0)} ms; ` +
      `5 s windows with a stall over 1 s: ${memory.filter((m) => m.loopLagMaxMs > 1000).length} of ${memory.length}`,
  );
  console.log(
    "\nthe server's own view (its histogram: mean time to answer; the rest of a client's wait is queueing):",
  );
  for (const [route, mean] of serverMeans)
    console.log(`  ${route.padEnd(70)} ${mean.toFixed(1).padStart(8)} ms`);
  console.log(
    `server CPU: ${(serverCpuMs / 1000).toFixed(1)} s over ${seconds.toFixed(0)} s (${(serverCpuMs / 10 / seconds).toFixed(0)} % of one core)`,
  );
  console.log(`server's own count of API requests (wrenn_http_request_duration_seconds): ${serverCounted}`);

  console.log('\nserver memory (MiB)       at s    RSS  heap used  heap total');
  const step = Math.max(1, Math.floor(memory.length / 12));
  for (const [i, m] of memory.entries())
    if (i % step === 0 || i === memory.length - 1)
      console.log(
        `${''.padEnd(25)} ${String(m.atSec).padStart(5)} ${m.rssMb.toFixed(1).padStart(6)} ${m.heapUsedMb.toFixed(1).padStart(10)} ${m.heapTotalMb.toFixed(1).padStart(11)}`,
      );
  const first = memory[0]!;
  const last = memory.at(-1)!;
  // The first minute fills caches and JIT; growth after it is what a leak would show.
  const settled = memory.filter((m) => m.atSec >= Math.min(60, seconds / 3));
  console.log(
    `RSS: ${first.rssMb.toFixed(1)} → ${last.rssMb.toFixed(1)} MiB (max ${Math.max(...memory.map((m) => m.rssMb)).toFixed(1)}), ` +
      `slope after warm-up ${slopePerMinute(settled.map((m) => [m.atSec, m.rssMb])).toFixed(2)} MiB/min`,
  );
  console.log(
    `heap used: ${first.heapUsedMb.toFixed(1)} → ${last.heapUsedMb.toFixed(1)} MiB (max ${Math.max(...memory.map((m) => m.heapUsedMb)).toFixed(1)}), ` +
      `slope after warm-up ${slopePerMinute(settled.map((m) => [m.atSec, m.heapUsedMb])).toFixed(2)} MiB/min`,
  );
}

async function main() {
  let agent: AgentProcess | undefined;
  let server: ServerProcess | undefined;
  let database: Awaited<ReturnType<typeof createBenchDatabase>> | undefined;
  const teams: Team[] = [];
  try {
    if (withAgent) agent = await startAgentProcess({ LOG_LEVEL: 'warn' }, { asDeployed: true });
    if (usePostgres) database = await createBenchDatabase();
    const metricsPort = await freePort();
    server = await startServerProcess(database?.url, {
      WRENN_AGENT_URL: agent?.url ?? '',
      WRENN_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      WRENN_OPEN_SIGNUP: 'true',
    });
    const base = server.url;
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    teams.push(...(await makeTeams(base)));
    if (withAgent)
      for (const team of teams) {
        const made = await call(base, 'POST', '/v1/sandboxes', keyed(team), { timeout_sec: 0 });
        if (made.status !== 201) throw new Error(`create: ${made.status} ${JSON.stringify(made.body)}`);
        team.sandboxId = made.body.id as string;
      }
    console.error(`server ${base} (pid ${server.pid}); ${clients} clients for ${durationSec} s…`);

    const t0 = performance.now();
    const until = t0 + durationSec * 1000;
    const rec = new Recorder(t0);
    const memory: MemorySample[] = [await sampleMemory(server, metricsUrl, t0)];
    const cpu0 = (await cpuMs(server.pid))!;
    const client0 = process.cpuUsage();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sleep(SAMPLE_EVERY_MS);
        if (sampling) memory.push(await sampleMemory(server, metricsUrl, t0));
      }
    })();
    await Promise.all(
      Array.from({ length: clients }, (_, i) => {
        const team = teams[i % teams.length]!;
        return i < lifecycleClients
          ? lifecycleClient(base, team, until, rec)
          : readClient(base, team, until, rec, i + 1);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const serverCpuMs = (await cpuMs(server.pid))! - cpu0;
    const clientUsage = process.cpuUsage(client0);
    const clientCpuMs = (clientUsage.user + clientUsage.system) / 1000;
    sampling = false;
    await sampler;
    memory.push(await sampleMemory(server, metricsUrl, t0));
    const metricsText = await (await fetch(metricsUrl)).text();
    const serverCounted = [
      ...metricsText.matchAll(/^wrenn_http_request_duration_seconds_count\{[^}]*\} (\d+)$/gm),
    ]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
    // Mean server-side time per series (method, route, status class) with more than 100 requests.
    const sums = new Map<string, { sum: number; count: number }>();
    for (const m of metricsText.matchAll(
      /^wrenn_http_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$/gm,
    )) {
      const entry = sums.get(m[2]!) ?? { sum: 0, count: 0 };
      entry[m[1] as 'sum' | 'count'] = Number(m[3]);
      sums.set(m[2]!, entry);
    }
    const serverMeans = [...sums]
      .filter(([, e]) => e.count > 100)
      .map(([labels, e]): [string, number] => [labels, (e.sum / e.count) * 1000]);
    report(rec, seconds, memory, serverCpuMs, clientCpuMs, serverCounted, serverMeans);
  } finally {
    // Whatever happened: the run's sandboxes go, then the server, the agent and the database.
    if (server)
      for (const team of teams)
        if (team.sandboxId)
          await call(server.url, 'DELETE', `/v1/sandboxes/${team.sandboxId}`, keyed(team)).catch(
            () => undefined,
          );
    await server?.stop();
    await agent?.stop();
    await database?.drop();
  }
}

await main();
