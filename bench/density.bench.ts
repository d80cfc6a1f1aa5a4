// How many idle sandboxes one host holds (issue 13: 300 on a 24 GiB machine, each still answering
// exec), measured rather than extrapolated: a real agent and control plane started here, sandboxes
// created through `/v1` a few at a time until `--count` are running, then every one of them asked
// to run a command. The memory they take is the host's MemAvailable before and after; the baseline
// from the same run is bare `runsc run` sandboxes of the same image idling on `sleep` (gVisor's own
// cost per sandbox, without envd, the agent or a network slot).
// Usage: npm run bench:density [-- --count 300 --memory 0 --concurrency 4 --baseline 10]
import { readdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { installDir, startAgentProcess, type AgentProcess } from '../test/e2e/support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from '../test/e2e/support/api-client.js';
import { cleanupRawBundle, prepareRawBundle, rawFlags, runDetached } from './raw-runsc.js';
import { printPercentiles, timed } from './stats.js';

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
};
const count = Number(arg('--count', '300'));
// 0: the default size (what a create without sizes gets).
const memoryMb = Number(arg('--memory', '0'));
const concurrency = Number(arg('--concurrency', '4'));
const baselineCount = Number(arg('--baseline', '10'));
const runsc = path.join(installDir, 'bin/runsc');

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (interrupted = true));

async function memAvailableMiB(): Promise<number> {
  const meminfo = await readFile('/proc/meminfo', 'utf8');
  const kib = Number(/^MemAvailable:\s+(\d+) kB/m.exec(meminfo)?.[1]);
  return kib / 1024;
}

/** MemAvailable settles a little after processes start; the lowest of a few readings. */
async function settledMemAvailableMiB(): Promise<number> {
  let low = Infinity;
  for (let i = 0; i < 5; i++) {
    low = Math.min(low, await memAvailableMiB());
    await new Promise((r) => setTimeout(r, 400));
  }
  return low;
}

/** Busy CPU of the whole machine over `ms`, in cores (1.0 = one core busy all the time). */
async function busyCores(ms: number): Promise<number> {
  // /proc/stat's first line: jiffies per state since boot, all cores; idle and iowait are not busy.
  const busyJiffies = async () => {
    const fields = (await readFile('/proc/stat', 'utf8'))
      .split('\n')[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    return fields.reduce((a, b) => a + b, 0) - (fields[3] ?? 0) - (fields[4] ?? 0);
  };
  const before = await busyJiffies();
  await new Promise((r) => setTimeout(r, ms));
  return ((await busyJiffies()) - before) / USER_HZ / (ms / 1000);
}
const USER_HZ = 100;

/** CPU time (s) of every process now, by command name (`runsc-sandbox`, `node`, …). */
async function cpuByCommand(): Promise<Map<number, { comm: string; seconds: number }>> {
  const out = new Map<number, { comm: string; seconds: number }>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state … utime stime: fields 14 and 15, counted after the `)` that ends comm.
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const rest = stat.slice(close + 2).split(' ');
    out.set(Number(entry), { comm, seconds: (Number(rest[11]) + Number(rest[12])) / USER_HZ });
  }
  return out;
}

/** Where the machine's CPU went over `ms`, by command: the busiest first, in cores. */
async function whereCpuGoes(ms: number): Promise<[string, number][]> {
  const before = await cpuByCommand();
  await new Promise((r) => setTimeout(r, ms));
  const after = await cpuByCommand();
  const byComm = new Map<string, number>();
  for (const [pid, { comm, seconds }] of after) {
    const spent = seconds - (before.get(pid)?.seconds ?? seconds);
    if (spent > 0) byComm.set(comm, (byComm.get(comm) ?? 0) + spent / (ms / 1000));
  }
  return [...byComm].sort((a, b) => b[1] - a[1]).slice(0, 6);
}

/** `n` at a time over `items`, stopping early when interrupted. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined && !interrupted; item = queue.shift()) await fn(item);
  };
  await Promise.all(Array.from({ length: n }, worker));
}

/** Bare runsc: `n` sandboxes of the base image idling on `sleep`: MiB each, and the machine's busy cores meanwhile. */
async function bareSandboxes(n: number): Promise<{ mib: number; cores: number }> {
  const bundle = await prepareRawBundle('bench-density', ['/bin/sleep', 'infinity']);
  try {
    const before = await settledMemAvailableMiB();
    for (let i = 0; i < n; i++)
      await runDetached(
        [runsc, ...rawFlags(bundle), 'run', '-bundle', bundle.dir, '-detach', `density${i}`],
        bundle.dir,
      );
    const after = await settledMemAvailableMiB();
    const cores = await busyCores(IDLE_WINDOW_MS);
    return { mib: (before - after) / n, cores };
  } finally {
    await cleanupRawBundle(bundle);
  }
}

/** How long the machine is watched with every sandbox idle. */
const IDLE_WINDOW_MS = 10_000;

async function main() {
  console.log(
    `density: ${count} sandboxes of memory_mb ${memoryMb || 'default'}, ${concurrency} creates at a time`,
  );
  const quiet = await busyCores(IDLE_WINDOW_MS);
  const bare = await bareSandboxes(baselineCount);
  const bareMiB = bare.mib;
  console.log(
    `baseline: bare runsc sandbox idling on sleep: ${bareMiB.toFixed(1)} MiB each (n=${baselineCount}); ` +
      `machine busy ${quiet.toFixed(2)} cores before, ${bare.cores.toFixed(2)} with them`,
  );

  let agent: AgentProcess | undefined;
  let plane: ControlPlane | undefined;
  const ids: string[] = [];
  try {
    agent = await startAgentProcess({ WRENN_MAX_SANDBOXES: String(count + 16) }, { asDeployed: true });
    plane = await startControlPlane(agent.url);
    const url = plane.server.url;
    const key = await teamApiKey(url, `density-${Date.now()}@example.com`);
    const before = await settledMemAvailableMiB();
    const createMs: number[] = [];
    const failures: string[] = [];
    const started = performance.now();
    await pool(
      Array.from({ length: count }, (_, i) => i),
      concurrency,
      async (i) => {
        const [res, ms] = await timed(() =>
          apiCall(url, 'POST', '/v1/sandboxes', {
            key,
            body: memoryMb ? { memory_mb: memoryMb, timeout_sec: 0 } : { timeout_sec: 0 },
          }),
        );
        if (res.status === 201) {
          ids.push(res.body.id as string);
          createMs.push(ms);
        } else failures.push(`create ${i}: ${res.status} ${JSON.stringify(res.body)}`);
        if ((i + 1) % 50 === 0)
          console.log(
            `  ${i + 1} asked, ${ids.length} running, ${(await memAvailableMiB()).toFixed(0)} MiB available`,
          );
      },
    );
    const createSec = (performance.now() - started) / 1000;
    const after = await settledMemAvailableMiB();
    const perSandbox = (before - after) / Math.max(1, ids.length);
    const idleCores = await busyCores(IDLE_WINDOW_MS);
    const idleBy = await whereCpuGoes(IDLE_WINDOW_MS);

    // Every one of them, still there and answering.
    const execMs: number[] = [];
    await pool([...ids], concurrency, async (id) => {
      const [res, ms] = await timed(() =>
        apiCall(url, 'POST', `/v1/sandboxes/${id}/exec`, { key, body: { cmd: 'echo alive' } }),
      );
      if (res.status === 200 && (res.body.stdout as string) === 'alive\n') execMs.push(ms);
      else failures.push(`exec ${id}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    });

    printPercentiles(
      `${ids.length} of ${count} sandboxes running at once (memory_mb ${memoryMb || 'default'})`,
      [
        ['create (POST /v1/sandboxes), each', createMs, 'ms'],
        ['exec `echo alive` in each, all running', execMs, 'ms'],
      ],
      1,
    );
    console.log(
      `creates: ${ids.length} in ${createSec.toFixed(1)} s (${(ids.length / createSec).toFixed(2)}/s)`,
    );
    console.log(`answered exec: ${execMs.length} of ${ids.length}; failures: ${failures.length}`);
    for (const f of failures.slice(0, 10)) console.log(`  ${f}`);
    console.log(
      `memory: ${(before - after).toFixed(0)} MiB for ${ids.length} sandboxes = ${perSandbox.toFixed(1)} MiB each` +
        ` (bare runsc on sleep ${bareMiB.toFixed(1)} MiB, ${(perSandbox / bareMiB).toFixed(1)}x); ${after.toFixed(0)} MiB still available`,
    );
    console.log(
      `CPU with all ${ids.length} idle (${IDLE_WINDOW_MS / 1000} s): ${idleCores.toFixed(2)} cores busy` +
        ` (${((idleCores / Math.max(1, ids.length)) * 1000).toFixed(1)} millicores each; the machine before: ${quiet.toFixed(2)})`,
    );
    console.log(
      `  by command (cores): ${idleBy.map(([comm, cores]) => `${comm} ${cores.toFixed(2)}`).join(', ')}`,
    );
    const agentRss = await readFile(`/proc/${agent.child.pid}/status`, 'utf8').then(
      (s) => Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1]) / 1024,
    );
    console.log(
      `agent process RSS: ${agentRss.toFixed(0)} MiB; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    // The agent destroys what it runs when it stops; the control plane's rows go with its data dir.
    await plane?.stop().catch(() => undefined);
    await agent?.stop().catch(() => undefined);
  }
}

await main();
