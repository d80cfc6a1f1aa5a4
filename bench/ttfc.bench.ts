// Time to first command (issue 13), measured as a user would: the official `e2b` SDK against a real
// control plane and agent started here, next to bare `runsc` baselines of the same image from the
// same run. Where the time goes comes from the agent's own phase timers (its JSON logs), and the
// control plane's share is what the SDK saw minus what the agent logged for the same sandbox.
// Writes a plot of the distributions to docs/performance/ttfc.png (Debian's Chromium renders it).
// With a warm pool (the agent's SetWarmPool, docs/warm-pool.md): the same creates again, each started
// when the pool is full and its refill done (`--pool 0` skips them), plus back-to-back creates that
// drain it.
// `--only` runs some series: create, echo, exec, resume, snapshot, rpc, pool, concurrent (default all;
// the bare baselines run only beside the series that need them).
// Usage: npm run bench:ttfc [-- --rounds 10 --execs 100 --concurrency 20,50 --pool 2 --only exec,pool]
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { Sandbox } from 'e2b';
import { exec } from '@wrenn/core';
import {
  installDir,
  repoRoot,
  testDataDir,
  startAgentProcess,
  type AgentProcess,
} from '../test/e2e/support/agent-process.js';
import { startControlPlane, teamApiKey, type ControlPlane } from '../test/e2e/support/api-client.js';
import { distributionSvg, renderPng } from './plot.js';
import { cleanupRawBundle, prepareRawBundle, rawFlags, runDetached, type RawBundle } from './raw-runsc.js';
import { percentiles, printPercentiles, timed } from './stats.js';

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
};
const rounds = Number(arg('--rounds', '10')) || 10;
const execs = Number(arg('--execs', '100')) || 100;
const concurrency = arg('--concurrency', '20,50').split(',').map(Number).filter(Boolean);
const poolSize = Number(arg('--pool', '2'));
const allSeries = ['create', 'echo', 'exec', 'resume', 'snapshot', 'rpc', 'pool', 'concurrent'];
const only = new Set(arg('--only', allSeries.join(',')).split(','));
for (const name of only) if (!allSeries.includes(name)) throw new Error(`--only: no series ${name}`);
const runs = (name: string) => only.has(name);
const warmups = 2;
const runsc = path.join(installDir, 'bin/runsc');
// runsc's state of the agent's sandboxes (the agent's layout.runscRoot under the e2e data dir).
const agentRunscRoot = path.join(testDataDir, 'run', 'runsc');
// A run of some series only leaves the committed plot alone.
const plotFile = process.argv.includes('--only')
  ? path.join(installDir, 'bench-ttfc.png')
  : path.join(repoRoot, 'docs/performance/ttfc.png');
const resultsFile = path.join(installDir, 'bench-ttfc.json');

// Ctrl-C / SIGTERM: finish the current step, then clean up like any other failure.
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (interrupted = true));
const checkInterrupted = () => {
  if (interrupted) throw new Error('interrupted');
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Baselines: bare runsc, no agent, no envd.

/** `runsc run` of the base image until `echo hi` has printed: the floor of a cold create + command. */
async function rawRunToOutput(n: number): Promise<number[]> {
  console.error(`baseline: bare runsc run to first output, ${warmups} warm-ups + ${n}…`);
  const bundle = await prepareRawBundle('bench-ttfc-run', ['/bin/sh', '-c', 'echo hi']);
  const samples: number[] = [];
  try {
    for (let i = 0; i < warmups + n; i++) {
      checkInterrupted();
      const t = performance.now();
      const child = spawn(runsc, [...rawFlags(bundle), 'run', '-bundle', bundle.dir, `ttfc${i}`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      const printed = new Promise<number>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes('hi\n')) resolve(performance.now() - t);
        });
        child.stderr.on('data', (b: Buffer) => (err += b.toString()));
        child.once('error', reject);
        // 'close', not 'exit': the output may still be in the pipe when the process has exited.
        child.once('close', (code) =>
          reject(new Error(`runsc run exited with ${code} before output: ${err}`)),
        );
      });
      const ms = await printed;
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
      if (i >= warmups) samples.push(ms);
    }
  } finally {
    await cleanupRawBundle(bundle);
  }
  return samples;
}

/** What a bare checkpoint and restore hold: an idle Node.js process, or envd itself. */
const RAW_WORKLOADS = {
  'idle node': {
    args: ['/usr/bin/node', '-e', 'setInterval(() => {}, 1000)'],
    binds: [{ source: '/usr/bin/node', destination: '/usr/bin/node' }],
  },
  // The process every sandbox runs, from the same bundle: a checkpoint of it is the same size as the
  // agent's (~25 MB against ~15 for an idle node), so the aims' "bare restore of the same image".
  envd: {
    args: ['/opt/wrenn/bin/node', '/opt/wrenn/envd/envd.mjs'],
    binds: [
      { source: process.execPath, destination: '/opt/wrenn/bin/node' },
      { source: path.join(repoRoot, 'apps/envd/dist'), destination: '/opt/wrenn/envd' },
    ],
  },
};

/**
 * `runsc checkpoint` and `runsc restore` of a workload in the base image, as bench:snapshot does;
 * each restore is checkpointed again in the next round.
 */
async function rawCheckpointRestore(
  n: number,
  workload: keyof typeof RAW_WORKLOADS,
): Promise<{ checkpoint: number[]; restore: number[] }> {
  console.error(`baseline: bare runsc checkpoint / restore of ${workload}, ${warmups} warm-ups + ${n}…`);
  const { args, binds } = RAW_WORKLOADS[workload];
  const bundle: RawBundle = await prepareRawBundle('bench-ttfc-snapshot', args, binds);
  const flags = rawFlags(bundle);
  const checkpoint: number[] = [];
  const restore: number[] = [];
  try {
    let id = 'ttfc0';
    await runDetached([runsc, ...flags, 'run', '-bundle', bundle.dir, '-detach', id], bundle.dir);
    await sleep(1000);
    for (let i = 0; i < warmups + n; i++) {
      checkInterrupted();
      const image = path.join(bundle.dir, `image${i}`);
      await mkdir(image);
      const [, c] = await timed(() => exec([runsc, ...flags, 'checkpoint', `--image-path=${image}`, id]));
      id = `ttfc${i + 1}`;
      const restoreArgv = [runsc, ...flags, 'restore', `--image-path=${image}`, '--background'];
      const [, r] = await timed(() =>
        runDetached([...restoreArgv, '-bundle', bundle.dir, '-detach', id], bundle.dir),
      );
      if (i >= warmups) {
        checkpoint.push(c);
        restore.push(r);
      }
    }
  } finally {
    await cleanupRawBundle(bundle);
  }
  return { checkpoint, restore };
}

// ---------------------------------------------------------------------------------------------
// The agent's phase timers, read from its JSON log lines as they arrive.

interface PhaseEvent {
  msg: string;
  sandboxId: string;
  ms: number;
  phases: Record<string, number>;
}
const PHASE_MESSAGES = new Set([
  'sandbox created',
  'sandbox restored from snapshot',
  'sandbox paused',
  'sandbox resumed',
  'sandbox claimed from the warm pool',
]);

function collectPhases(agent: AgentProcess): PhaseEvent[] {
  const events: PhaseEvent[] = [];
  let partial = '';
  agent.child.stderr!.on('data', (b: Buffer) => {
    const lines = (partial + b.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        const e = JSON.parse(line) as Partial<PhaseEvent>;
        if (e.msg && PHASE_MESSAGES.has(e.msg) && e.sandboxId && typeof e.ms === 'number')
          events.push({ msg: e.msg, sandboxId: e.sandboxId, ms: e.ms, phases: e.phases ?? {} });
      } catch {
        // Not a log record (a partial line); the phases are a diagnosis, not the measurement.
      }
    }
  });
  return events;
}

// ---------------------------------------------------------------------------------------------
// Through the public API with the e2b SDK.

type Series = Record<string, number[]>;
/** SDK-observed ms per sandbox id and operation, to set against the agent's log of the same one. */
type Observed = Map<string, number>;

interface SdkResults {
  series: Series;
  /** `${kind}:${sandboxId}` → ms the SDK saw. */
  observed: Observed;
  concurrent: { n: number; ok: number; wallMs: number; lastMs: number; errors: Map<string, number> }[];
}
/** Series that failed, by their error: printed with the results. */
const failures: string[] = [];

async function sdkBench(agent: AgentProcess): Promise<SdkResults> {
  const series: Series = {};
  const observed: Observed = new Map();
  const add = (name: string, ms: number) => (series[name] ??= []).push(ms);
  const create = (template = 'base') => Sandbox.create(template, { timeoutMs: 300_000 });
  // A series that fails is reported and the rest still run: one broken path must not cost the others.
  const step = async (fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      if (interrupted) throw err;
      const text = err instanceof Error ? err.message : String(err);
      console.error(`  failed: ${text}`);
      failures.push(text);
    }
  };
  /** One series of the bench, when `--only` names it (or is not given). */
  const measure = async (name: string, title: string, fn: () => Promise<void>) => {
    if (!runs(name)) return;
    console.error(title);
    await step(fn);
  };

  await measure('create', `SDK: create alone, ${warmups} warm-ups + ${rounds}…`, async () => {
    for (let i = 0; i < warmups + rounds; i++) {
      checkInterrupted();
      const [sbx, ms] = await timed(() => create());
      if (i >= warmups) {
        add('create', ms);
        observed.set(`create:${sbx.sandboxId}`, ms);
      }
      await sbx.kill();
    }
  });

  await measure('echo', `SDK: create + first echo, ${rounds}…`, async () => {
    for (let i = 0; i < rounds; i++) {
      checkInterrupted();
      const t = performance.now();
      const sbx = await create();
      const created = performance.now() - t;
      const res = await sbx.commands.run('echo hi');
      const total = performance.now() - t;
      if (res.stdout !== 'hi\n') throw new Error(`echo hi: ${JSON.stringify(res)}`);
      add('create + first echo', total);
      add('  of which the first run', total - created);
      observed.set(`create:${sbx.sandboxId}`, created);
      await sbx.kill();
    }
  });

  await measure(
    'exec',
    `SDK: run('true') on a warm sandbox, ${execs}, each beside a bare runsc exec…`,
    async () => {
      {
        const sbx = await create();
        try {
          // No pool runs yet, so the sandbox's runsc container is named after its id.
          const bareExec = () =>
            exec([runsc, `--root=${agentRunscRoot}`, 'exec', sbx.sandboxId, '/bin/true']);
          for (let i = 0; i < 5 + execs; i++) {
            const [res, ms] = await timed(() => sbx.commands.run('true'));
            if (res.exitCode !== 0) throw new Error(`true: ${JSON.stringify(res)}`);
            const [, bareMs] = await timed(bareExec);
            if (i >= 5) {
              add("run('true'), warm", ms);
              add('bare runsc exec true', bareMs);
            }
          }
        } finally {
          await sbx.kill();
        }
      }
    },
  );

  await measure('resume', `SDK: pause / connect (resume), ${warmups} warm-ups + ${rounds}…`, async () => {
    {
      let sbx = await create();
      try {
        for (let i = 0; i < warmups + rounds; i++) {
          checkInterrupted();
          const [, p] = await timed(() => sbx.pause());
          // The agent frees the runtime and slot after a pause has answered (~120 ms); a resume on
          // its heels would wait for that. Real resumes come seconds to days later (as bench:snapshot).
          await sleep(500);
          const t = performance.now();
          sbx = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 300_000 });
          const r = performance.now() - t;
          await sbx.commands.run('true');
          const first = performance.now() - t;
          if (i >= warmups) {
            add('pause', p);
            add('resume (connect), idle', r);
            add('resume + first run', first);
          }
        }
      } finally {
        await sbx.kill();
      }
    }
  });

  await measure(
    'snapshot',
    `SDK: snapshot template, create from it ${warmups} warm-ups + ${rounds}…`,
    async () => {
      {
        const src = await create();
        await src.commands.run('echo prepared > /home/user/state');
        const snapshot = await src.createSnapshot();
        await src.kill();
        try {
          for (let i = 0; i < warmups + rounds; i++) {
            checkInterrupted();
            const t = performance.now();
            const sbx = await create(snapshot.snapshotId);
            const created = performance.now() - t;
            const res = await sbx.commands.run('echo hi');
            const total = performance.now() - t;
            if (res.stdout !== 'hi\n') throw new Error(`echo hi: ${JSON.stringify(res)}`);
            if (i >= warmups) {
              add('create from snapshot', created);
              add('create from snapshot + first echo', total);
              observed.set(`snapshot:${sbx.sandboxId}`, created);
            }
            await sbx.kill();
          }
        } finally {
          await Sandbox.deleteSnapshot(snapshot.snapshotId);
        }
      }
    },
  );

  // For the API-less reference: the agent's CreateSandbox RPC called directly, same template.
  await measure('rpc', `agent RPC: CreateSandbox directly, ${rounds}…`, async () => {
    for (let i = 0; i < rounds; i++) {
      checkInterrupted();
      const [res, ms] = await timed(() => agent.client.createSandbox({ template: 'base', timeoutSec: 300 }));
      add('agent CreateSandbox RPC (no control plane)', ms);
      await agent.client.destroySandbox({ sandboxId: res.sandbox!.id });
    }
  });

  if (poolSize > 0 && runs('pool')) await poolBench(agent, add, observed, step);

  const concurrent: SdkResults['concurrent'] = [];
  for (const n of runs('concurrent') ? concurrency : []) {
    checkInterrupted();
    console.error(`SDK: ${n} concurrent creates (the SDK's default 60 s request timeout)…`);
    const t = performance.now();
    const made: Sandbox[] = [];
    const errors = new Map<string, number>();
    let lastMs = 0;
    // As a user would write it: n creates at once, default options but the sandbox timeout.
    const results = await Promise.allSettled(
      Array.from({ length: n }, async () => {
        const [sbx, ms] = await timed(() => create());
        made.push(sbx);
        lastMs = Math.max(lastMs, performance.now() - t);
        return ms;
      }),
    );
    const wallMs = performance.now() - t;
    for (const r of results) {
      if (r.status === 'fulfilled') add(`${n} concurrent creates, each`, r.value);
      else {
        const text = r.reason instanceof Error ? r.reason.message : String(r.reason);
        errors.set(text, (errors.get(text) ?? 0) + 1);
      }
    }
    concurrent.push({ n, ok: made.length, wallMs, lastMs, errors });
    await Promise.allSettled(made.map((s) => s.kill()));
    // Creates the SDK gave up on may still finish on the agent; let them settle before the next batch.
    await sleep(errors.size ? 30_000 : 2_000);
  }
  return { series, observed, concurrent };
}

/** The creates again with a warm pool on `base` and on a snapshot template (agent RPC SetWarmPool). */
async function poolBench(
  agent: AgentProcess,
  add: (name: string, ms: number) => void,
  observed: Observed,
  step: (fn: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const { client } = agent;
  const create = (template = 'base') => Sandbox.create(template, { timeoutMs: 300_000 });
  /** Until the pool is full and its last refill has settled: each measured create is a claim. */
  const full = async (template: string) => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const pool = (await client.listWarmPools({})).pools.find((p) => p.template === template);
      if (pool && pool.ready >= poolSize) break;
      if (pool?.lastError && pool.failures > 3) throw new Error(`warm pool ${template}: ${pool.lastError}`);
      if (Date.now() > deadline) throw new Error(`warm pool ${template} not full after 120 s`);
      await sleep(100);
    }
    await sleep(300);
  };
  const claims = async (template: string) =>
    (await client.listWarmPools({})).pools.find((p) => p.template === template)?.claims ?? 0n;

  const series = async (template: string, prefix: string) => {
    await client.setWarmPool({ template, size: poolSize });
    try {
      console.error(`SDK, warm pool of ${poolSize} on ${template}: create alone, ${warmups} + ${rounds}…`);
      const before = await claims(template);
      for (let i = 0; i < warmups + rounds; i++) {
        checkInterrupted();
        await full(template);
        const [sbx, ms] = await timed(() => create(template));
        if (i >= warmups) {
          add(`${prefix}: create`, ms);
          observed.set(`${prefix}:${sbx.sandboxId}`, ms);
        }
        await sbx.kill();
      }
      console.error(`  create + first echo, ${rounds}…`);
      for (let i = 0; i < rounds; i++) {
        checkInterrupted();
        await full(template);
        const t = performance.now();
        const sbx = await create(template);
        const created = performance.now() - t;
        const res = await sbx.commands.run('echo hi');
        const total = performance.now() - t;
        if (res.stdout !== 'hi\n') throw new Error(`echo hi: ${JSON.stringify(res)}`);
        add(`${prefix}: create + first echo`, total);
        add(`  ${prefix}: of which the first run`, total - created);
        observed.set(`${prefix}:${sbx.sandboxId}`, created);
        await sbx.kill();
      }
      const hits = (await claims(template)) - before;
      const expected = BigInt(warmups + 2 * rounds);
      if (hits !== expected) throw new Error(`${template}: ${hits} of ${expected} creates were claims`);
    } finally {
      await client.setWarmPool({ template, size: 0 });
    }
  };

  await step(() => series('base', 'pool'));

  console.error(`agent RPC with a warm pool of ${poolSize}: CreateSandbox directly, ${rounds}…`);
  await step(async () => {
    await client.setWarmPool({ template: 'base', size: poolSize });
    try {
      for (let i = 0; i < rounds; i++) {
        checkInterrupted();
        await full('base');
        const [res, ms] = await timed(() => client.createSandbox({ template: 'base', timeoutSec: 300 }));
        add('pool: agent CreateSandbox RPC', ms);
        await client.destroySandbox({ sandboxId: res.sandbox!.id });
      }
      // Back to back, never waiting: the pool serves the first ones, then creates boot (misses)
      // while the refill gives way to them.
      console.error(`SDK, warm pool of ${poolSize}: ${rounds} creates back to back…`);
      await full('base');
      const before = (await client.listWarmPools({})).pools.find((p) => p.template === 'base')!;
      for (let i = 0; i < rounds; i++) {
        checkInterrupted();
        const [sbx, ms] = await timed(() => create());
        add('pool: create, back to back', ms);
        await sbx.kill();
      }
      const after = (await client.listWarmPools({})).pools.find((p) => p.template === 'base')!;
      console.error(
        `  back to back: ${after.claims - before.claims} claims, ${after.misses - before.misses} misses`,
      );
      backToBack = {
        claims: Number(after.claims - before.claims),
        misses: Number(after.misses - before.misses),
      };
    } finally {
      await client.setWarmPool({ template: 'base', size: 0 });
    }
  });

  await step(async () => {
    const src = await create();
    await src.commands.run('echo prepared > /home/user/state');
    const known = new Set((await client.listTemplates({})).templates.map((t) => t.name));
    const snapshot = await src.createSnapshot();
    await src.kill();
    try {
      const name = (await client.listTemplates({})).templates.find((t) => !known.has(t.name))?.name;
      if (!name) throw new Error('the snapshot is not among the agent’s templates');
      // Created through the SDK by its snapshot id; pooled on the agent under its template name.
      const template = snapshot.snapshotId;
      await snapshotPoolSeries(name, template);
    } finally {
      await Sandbox.deleteSnapshot(snapshot.snapshotId);
    }
  });

  async function snapshotPoolSeries(agentName: string, sdkName: string) {
    await client.setWarmPool({ template: agentName, size: poolSize });
    try {
      console.error(
        `SDK, warm pool of ${poolSize} on a snapshot: create + first echo, ${warmups} + ${rounds}…`,
      );
      const before = await claims(agentName);
      for (let i = 0; i < warmups + rounds; i++) {
        checkInterrupted();
        await full(agentName);
        const t = performance.now();
        const sbx = await create(sdkName);
        const created = performance.now() - t;
        const res = await sbx.commands.run('echo hi');
        const total = performance.now() - t;
        if (res.stdout !== 'hi\n') throw new Error(`echo hi: ${JSON.stringify(res)}`);
        if (i >= warmups) {
          add('pool snapshot: create', created);
          add('pool snapshot: create + first echo', total);
          observed.set(`pool:${sbx.sandboxId}`, created);
        }
        await sbx.kill();
      }
      const hits = (await claims(agentName)) - before;
      if (hits !== BigInt(warmups + rounds))
        throw new Error(`snapshot: ${hits} of ${warmups + rounds} creates were claims`);
    } finally {
      await client.setWarmPool({ template: agentName, size: 0 });
    }
  }
}
let backToBack: { claims: number; misses: number } | undefined;

// ---------------------------------------------------------------------------------------------
// Where the time goes.

const median = (xs: number[]) => percentiles(xs).p50;

function phaseTable(title: string, events: PhaseEvent[], observed: Observed, kind: string) {
  if (!events.length) {
    console.log(`\n${title}: no agent log records`);
    return;
  }
  const names = [...new Set(events.flatMap((e) => Object.keys(e.phases)))];
  const rows: [string, number[], string][] = names.map((p) => [
    `  agent phase ${p}`,
    events.map((e) => e.phases[p] ?? 0),
    'ms',
  ]);
  rows.push(['  agent total (its timer)', events.map((e) => e.ms), 'ms']);
  const outside = events.flatMap((e) => {
    const seen = observed.get(`${kind}:${e.sandboxId}`);
    return seen === undefined ? [] : [seen - e.ms];
  });
  if (outside.length) rows.push(['  SDK-observed − agent total (control plane, RPC, SDK)', outside, 'ms']);
  printPercentiles(title, rows, 0);
}

// ---------------------------------------------------------------------------------------------

const rawRun = runs('create') || runs('echo') ? await rawRunToOutput(rounds) : [];
const noRaw = { checkpoint: [] as number[], restore: [] as number[] };
const restores = runs('resume') || runs('snapshot');
const raw = restores ? await rawCheckpointRestore(rounds, 'idle node') : noRaw;
const rawEnvd = restores ? await rawCheckpointRestore(rounds, 'envd') : noRaw;

const agent = await startAgentProcess(
  { LOG_LEVEL: 'info', WRENN_SANDBOX_NAMESERVERS: '' },
  { asDeployed: true },
);
const events = collectPhases(agent);
let plane: ControlPlane | undefined;
let sdk: SdkResults;
try {
  plane = await startControlPlane(agent.url);
  process.env.E2B_API_URL = plane.server.url;
  process.env.E2B_SANDBOX_URL = plane.server.url;
  process.env.E2B_API_KEY = await teamApiKey(plane.server.url, `ttfc-${Date.now()}@example.com`);
  sdk = await sdkBench(agent);
} finally {
  await plane?.stop().catch((err: unknown) => console.error(err));
  await agent.stop().catch((err: unknown) => console.error(err));
}

const s = sdk.series;
const rows: [string, number[], string][] = [
  ["SDK Sandbox.create('base')", s.create ?? [], 'ms'],
  ['SDK create + first commands.run(echo hi)', s['create + first echo'] ?? [], 'ms'],
  ['  of which the first commands.run', s['  of which the first run'] ?? [], 'ms'],
  ['agent CreateSandbox RPC (no control plane)', s['agent CreateSandbox RPC (no control plane)'] ?? [], 'ms'],
  ['bare runsc run to first output (baseline)', rawRun, 'ms'],
  ["SDK commands.run('true'), warm sandbox", s["run('true'), warm"] ?? [], 'ms'],
  ['bare runsc exec true, same sandbox (baseline)', s['bare runsc exec true'] ?? [], 'ms'],
  [`SDK Sandbox.create('base'), warm pool of ${poolSize}`, s['pool: create'] ?? [], 'ms'],
  [`SDK create + first echo, warm pool`, s['pool: create + first echo'] ?? [], 'ms'],
  ['  of which the first commands.run (pool)', s['  pool: of which the first run'] ?? [], 'ms'],
  ['agent CreateSandbox RPC, warm pool', s['pool: agent CreateSandbox RPC'] ?? [], 'ms'],
  [`SDK create, back to back (pool of ${poolSize} drains)`, s['pool: create, back to back'] ?? [], 'ms'],
  ['SDK create from a snapshot, warm pool', s['pool snapshot: create'] ?? [], 'ms'],
  ['SDK from a snapshot + first echo, warm pool', s['pool snapshot: create + first echo'] ?? [], 'ms'],
  ['SDK create from a snapshot template', s['create from snapshot'] ?? [], 'ms'],
  ['SDK create from snapshot + first echo', s['create from snapshot + first echo'] ?? [], 'ms'],
  ['SDK connect (resume), idle', s['resume (connect), idle'] ?? [], 'ms'],
  ['SDK resume + first run', s['resume + first run'] ?? [], 'ms'],
  ['bare runsc restore, idle node (baseline)', raw.restore, 'ms'],
  ['bare runsc restore, envd (baseline)', rawEnvd.restore, 'ms'],
  ['SDK pause', s.pause ?? [], 'ms'],
  ['bare runsc checkpoint, idle node (baseline)', raw.checkpoint, 'ms'],
  ['bare runsc checkpoint, envd (baseline)', rawEnvd.checkpoint, 'ms'],
  ...concurrency.map((n): [string, number[], string] => [
    `SDK ${n} concurrent creates, each`,
    s[`${n} concurrent creates, each`] ?? [],
    'ms',
  ]),
];
printPercentiles(
  `Time to first command, ${rounds} rounds, ${execs} warm runs (ms)`,
  rows.filter(([, samples]) => samples.length > 0),
  1,
);

const ratio = (name: string, a: number[], b: number[], aim: string) => {
  if (a.length && b.length)
    console.log(`${name.padEnd(52)} ${(median(a) / median(b)).toFixed(2).padStart(6)}×   aim ${aim}`);
};
console.log('\nRatios of p50s to the baselines of this run');
ratio(
  "run('true') / bare runsc exec true",
  s["run('true'), warm"] ?? [],
  s['bare runsc exec true'] ?? [],
  '(≤ 30 ms)',
);
for (const [of, baseline] of [
  ['envd', rawEnvd],
  ['idle node', raw],
] as const) {
  ratio(
    `create from snapshot / bare restore, ${of}`,
    s['create from snapshot'] ?? [],
    baseline.restore,
    '≤ 1.3×',
  );
  ratio(`resume idle / bare restore, ${of}`, s['resume (connect), idle'] ?? [], baseline.restore, '≤ 1.3×');
  ratio(`pause / bare checkpoint, ${of}`, s.pause ?? [], baseline.checkpoint, '≤ 1.5×');
}
ratio('cold create / bare runsc run to output', s.create ?? [], rawRun, '(cold boot ≤ 600 ms)');

if (backToBack)
  console.log(
    `\nBack to back with a pool of ${poolSize}: ${backToBack.claims} claims, ${backToBack.misses} misses (cold boots)`,
  );
for (const text of failures) console.log(`\nA series failed: ${text}`);
console.log('\nConcurrent creates (e2b SDK, default request timeout)');
for (const c of sdk.concurrent) {
  const rate = c.ok / (c.lastMs / 1000 || 1);
  console.log(
    `${c.n} at once: ${c.ok} ok, ${c.n - c.ok} failed; last finished after ${(c.lastMs / 1000).toFixed(1)} s, ${rate.toFixed(2)} creates/s sustained`,
  );
  for (const [text, count] of c.errors) console.log(`  ${count}× ${text}`);
}

const cold = events.filter((e) => e.msg === 'sandbox created');
const coldSeq = cold.filter((e) => sdk.observed.has(`create:${e.sandboxId}`));
phaseTable("Where a cold create goes (SDK create('base'), sequential)", coldSeq, sdk.observed, 'create');
phaseTable(
  'Where a create from a snapshot goes',
  events.filter(
    (e) => e.msg === 'sandbox restored from snapshot' && sdk.observed.has(`snapshot:${e.sandboxId}`),
  ),
  sdk.observed,
  'snapshot',
);
phaseTable(
  'Where a pause goes (agent)',
  events.filter((e) => e.msg === 'sandbox paused'),
  new Map(),
  '',
);
phaseTable(
  'Where a resume goes (agent)',
  events.filter((e) => e.msg === 'sandbox resumed'),
  new Map(),
  '',
);
phaseTable(
  'Where a claim from the warm pool goes (agent timer: /init re-key and registration)',
  events.filter(
    (e) => e.msg === 'sandbox claimed from the warm pool' && sdk.observed.has(`pool:${e.sandboxId}`),
  ),
  sdk.observed,
  'pool',
);
phaseTable(
  'Warm pool refills (background: boots of base, restores of the snapshot)',
  events.filter((e) => e.sandboxId.startsWith('pool-')),
  new Map(),
  '',
);
const coldConcurrent = cold.filter(
  (e) => !sdk.observed.has(`create:${e.sandboxId}`) && !e.sandboxId.startsWith('pool-'),
);
phaseTable(
  'Cold creates not measured sequentially (concurrent batches, RPC, warm-ups)',
  coldConcurrent,
  new Map(),
  '',
);

// The raw samples, to re-plot or re-read without another run.
await writeFile(
  resultsFile,
  JSON.stringify(
    { rows, concurrent: sdk.concurrent.map((c) => ({ ...c, errors: [...c.errors] })), events },
    null,
    1,
  ),
);
const plot = distributionSvg(
  `Time to first command, ${new Date().toISOString().slice(0, 10)}, this machine (${cpus().length} cores): every sample, p50–p95 bar, p99 red tick`,
  'blue: through the public API with the e2b SDK · grey: bare runsc and agent-RPC baselines from the same run · log scale',
  rows
    .filter(([name, samples]) => !name.startsWith('  ') && samples.length > 0)
    .map(([name, samples]) => ({
      name,
      samples,
      baseline: name.includes('baseline') || name.startsWith('agent'),
    })),
);
await renderPng(plot.svg, plot.w, plot.h, plotFile);
console.error(`plot: ${path.relative(repoRoot, plotFile)}; samples: ${resultsFile}`);
