// `npm run chaos`: kill -9 the agent and the control plane at random moments of create, pause,
// resume, snapshot and build, on this machine, and check after each restart that nothing of Wrenn
// leaked, no running or paused sandbox was lost (running ones still answer, with their processes),
// and the database and the host agree within one reconcile. Bounded: a fixed number of rounds.
//
//   npm run chaos -- [--rounds 50] [--ops create,pause,resume,snapshot,build]
//                    [--target agent|server|both] [--seed N] [--max-minutes M]
//
// Root, runsc and the base image (scripts/setup.sh) and the test PostgreSQL (scripts/test-postgres.sh)
// are needed; the agent is the default instance on its own data dir (`$WRENN_DIR/chaos`), so run it
// where no e2e test runs (`flock /tmp/wrenn-e2e.lock npm run chaos …`). `reliability.md` has results.
import { randomInt } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { hostagent } from '@wrenn/contracts';
import { installDir, sleep, startAgentProcess, type AgentProcess } from '../e2e/support/agent-process.js';
import { apiCall, teamApiKey, type ApiResult } from '../e2e/support/api-client.js';
import { startServerReplica, type ServerReplica } from '../e2e/support/fleet.js';
import { wrennHostState, type WrennHostState } from '../e2e/support/host-state.js';

const OPS = ['create', 'pause', 'resume', 'snapshot', 'build'] as const;
type Op = (typeof OPS)[number];
type Victim = 'agent' | 'server';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '50' },
    ops: { type: 'string', default: OPS.join(',') },
    target: { type: 'string', default: 'both' },
    seed: { type: 'string' },
    // A bound in time too: no round starts after this many minutes (the summary says how many ran).
    'max-minutes': { type: 'string' },
  },
});
const rounds = Number(args.rounds);
const ops = args.ops.split(',') as Op[];
const victims: Victim[] = args.target === 'both' ? ['agent', 'server'] : [args.target as Victim];
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds: must be a whole number ≥ 1');
for (const op of ops) if (!OPS.includes(op)) throw new Error(`--ops: ${op} is not one of ${OPS.join(', ')}`);
for (const v of victims)
  if (v !== 'agent' && v !== 'server') throw new Error('--target: must be agent, server or both');
const maxMinutes = args['max-minutes'] === undefined ? Infinity : Number(args['max-minutes']);
if (!(maxMinutes > 0)) throw new Error('--max-minutes: must be a number > 0');
const seed = args.seed === undefined ? randomInt(2 ** 31) : Number(args.seed);
if (!Number.isInteger(seed)) throw new Error('--seed: must be an integer');

// mulberry32: a small seeded generator, so a run can be replayed with its seed.
let rngState = seed >>> 0;
function random(): number {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const dataDir = path.join(installDir, 'chaos');
const RECONCILE_MS = 5000;
const { RUNNING, PAUSED } = hostagent.SandboxStatus;

// The test PostgreSQL's (scripts/test-postgres.sh); a database of the run's own is made on it.
const postgresUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:54329/postgres';

async function createDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `wrenn_chaos_${seed}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 3000 });
    await client.connect().catch((err: Error) => {
      throw new Error(
        `no PostgreSQL at ${postgresUrl} (bash scripts/test-postgres.sh starts one): ${err.message}`,
      );
    });
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(postgresUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const agentPort = await freePort();
let agent: AgentProcess;
let server: ServerReplica;
let databaseUrl = '';
let key = '';
const serverDirs: string[] = [];

async function startAgent(first = false): Promise<void> {
  agent = await startAgentProcess(
    { WRENN_DIR: dataDir, WRENN_AGENT_LISTEN: `127.0.0.1:${agentPort}`, LOG_LEVEL: 'warn' },
    // The first start clears what an earlier, interrupted run left; later ones adopt.
    { keepPaused: !first },
  );
}

async function startServer(): Promise<void> {
  server = await startServerReplica('chaos', {
    DATABASE_URL: databaseUrl,
    WRENN_AGENT_URL: agent.url,
    LOG_LEVEL: process.env.CHAOS_SERVER_LOG_LEVEL ?? 'warn',
  });
  serverDirs.push(server.dataDir);
}

const call = (method: string, url: string, body?: unknown): Promise<ApiResult> =>
  apiCall(server.url, method, url, { key, body }).catch((err: unknown) => ({
    status: 0,
    body: { code: 'connection', message: (err as Error).message },
  }));

/** A failure of what chaos checks (not of the harness): counted, printed, and the run goes on. */
class Finding extends Error {}
const ensure = (cond: boolean, what: string) => {
  if (!cond) throw new Finding(what);
};

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const got = await probe();
      if (got !== undefined) return got;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Finding(`${what} (after ${ms} ms)${last instanceof Error ? `: ${last.message}` : ''}`);
    await sleep(200);
  }
}

interface Subject {
  id: string;
  pid: string;
}

/** A running sandbox with a file and a background process, through the API. */
async function newSubject(): Promise<Subject> {
  const created = await call('POST', '/v1/sandboxes', { timeout_sec: 0 });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
  const id = created.body.id as string;
  const out = await call('POST', `/v1/sandboxes/${id}/exec`, {
    cmd: 'echo kept > /tmp/mark; nohup sleep 100000 >/dev/null 2>&1 & echo $!',
  });
  const pid = typeof out.body.stdout === 'string' ? out.body.stdout.trim() : '';
  if (!/^\d+$/.test(pid)) throw new Error(`exec in ${id}: ${out.status} ${JSON.stringify(out.body)}`);
  return { id, pid };
}

/** The sandbox answers exec, with its file and its background process. */
async function checkAlive(s: Subject, what: string): Promise<void> {
  const out = await call('POST', `/v1/sandboxes/${s.id}/exec`, {
    cmd: `cat /tmp/mark; kill -0 ${s.pid} && echo alive`,
  });
  ensure(
    out.status === 200 && out.body.stdout === 'kept\nalive\n',
    `${what} ${s.id} does not answer with its process: ${out.status} ${JSON.stringify(out.body).slice(0, 300)}`,
  );
}

async function agentSandboxes(): Promise<Map<string, 'running' | 'paused' | 'other'>> {
  const { sandboxes } = await agent.client.listSandboxes({});
  return new Map(
    sandboxes.map((s) => [s.id, s.status === RUNNING ? 'running' : s.status === PAUSED ? 'paused' : 'other']),
  );
}

/**
 * What the subject of an operation became after the kill and restart: running or paused, the same
 * on the host and in the database, its process alive (a paused one is resumed to see it). It is
 * destroyed afterwards. `lost` when the host no longer has it.
 */
async function settle(s: Subject): Promise<'running' | 'paused'> {
  const outcome = await until(
    `${s.id}: database and host agree on running or paused`,
    2 * RECONCILE_MS + 2000,
    async () => {
      const onHost = (await agentSandboxes()).get(s.id);
      if (onHost === undefined) throw new Finding(`sandbox ${s.id} lost: the host no longer has it`);
      const row = await call('GET', `/v1/sandboxes/${s.id}`);
      const status = row.body.status as string;
      return (onHost === 'running' || onHost === 'paused') && status === onHost ? onHost : undefined;
    },
  );
  if (outcome === 'paused') {
    const resumed = await call('POST', `/v1/sandboxes/${s.id}/resume`);
    ensure(
      resumed.status === 200,
      `resume of ${s.id} after the restart: ${resumed.status} ${JSON.stringify(resumed.body)}`,
    );
  }
  await checkAlive(s, `${outcome} sandbox`);
  return outcome;
}

async function destroy(id: string): Promise<void> {
  const res = await call('DELETE', `/v1/sandboxes/${id}`);
  ensure(
    res.status === 204 || res.status === 404,
    `destroy ${id}: ${res.status} ${JSON.stringify(res.body)}`,
  );
}

/** Disagreements already reported: a later round reports only new ones. */
const knownDisagreements = new Set<string>();

/** The database's running and paused sandboxes equal the host's, within one reconcile. */
async function checkAgreement(): Promise<void> {
  let differ: string[] = [];
  await until('database and host agree on every sandbox', 2 * RECONCILE_MS + 2000, async () => {
    const host = new Set(
      [...(await agentSandboxes())].filter(([, st]) => st !== 'other').map(([id, st]) => `${id}=${st}`),
    );
    const listed = await call('GET', '/v1/sandboxes');
    if (listed.status !== 200) return undefined;
    const rows = new Set(
      ((listed.body.sandboxes ?? []) as { id: string; status: string }[])
        // Every row the database holds live: a `pending`, `missing` or `pausing` left over disagrees.
        .filter((r) => !['stopped', 'error', 'killed'].includes(r.status))
        .map((r) => `${r.id}=${r.status}`),
    );
    differ = [
      ...[...host].filter((e) => !rows.has(e)).map((e) => `only on the host: ${e}`),
      ...[...rows].filter((e) => !host.has(e)).map((e) => `only in the database: ${e}`),
    ].filter((d) => !knownDisagreements.has(d));
    return differ.length ? undefined : true;
  }).catch((err: unknown) => {
    for (const d of differ) knownDisagreements.add(d);
    throw new Finding(`${(err as Error).message}: ${differ.join('; ')}`);
  });
}

/** Wrenn's footprint on the host, comparable between two moments (sorted, pids of runsc included). */
async function footprint(): Promise<Record<string, string[]>> {
  const state = await wrennHostState(dataDir);
  const staging = (await readdir(path.join(dataDir, 'templates')).catch(() => [] as string[]))
    .filter((n) => n.startsWith('.staging-'))
    .sort();
  for (const k of Object.keys(state) as (keyof WrennHostState)[]) state[k].sort();
  return { ...state, staging };
}

function footprintDiff(a: Record<string, string[]>, b: Record<string, string[]>): string {
  const out: string[] = [];
  for (const k of Object.keys(a)) {
    const before = new Set(a[k]);
    const after = new Set(b[k]);
    const added = [...after].filter((x) => !before.has(x));
    const gone = [...before].filter((x) => !after.has(x));
    if (added.length) out.push(`${k} +${JSON.stringify(added)}`);
    if (gone.length) out.push(`${k} -${JSON.stringify(gone)}`);
  }
  return out.join('; ');
}

async function kill(victim: Victim): Promise<void> {
  if (victim === 'agent') await agent.kill();
  else await server.kill();
}

async function restart(victim: Victim): Promise<void> {
  if (victim === 'agent') await startAgent();
  else await startServer();
}

interface RoundResult {
  op: Op;
  victim: Victim;
  delayMs: number;
  windowMs: number;
  /** Where the kill landed: before the call answered (in flight) or after; for an agent, with an open journal. */
  phase: string;
  outcome: string;
  findings: string[];
}

const measured = new Map<Op, number>();
const results: RoundResult[] = [];
let round = 0;
let templateSeq = 0;

/**
 * One operation with a kill `delayMs` into it (none when undefined: the measuring run). Returns
 * where the kill landed and what became of the subject.
 */
async function runOp(
  op: Op,
  victim: Victim,
  delayMs: number | undefined,
  // Filled in as the round goes, so a finding thrown midway still reports where the kill landed.
  seen: { phase: string; outcome: string } = { phase: '', outcome: '' },
): Promise<void> {
  let subject: Subject | undefined;
  if (op !== 'create' && op !== 'build') subject = await newSubject();
  if (op === 'resume') {
    const paused = await call('POST', `/v1/sandboxes/${subject!.id}/pause`);
    if (paused.status !== 200)
      throw new Error(`pause before resume: ${paused.status} ${JSON.stringify(paused.body)}`);
  }
  const template = `chaos-${seed}-${++templateSeq}`;
  const started = Date.now();
  let answered: ApiResult | undefined;
  let buildId: string | undefined;
  const request = (async () => {
    switch (op) {
      case 'create':
        return call('POST', '/v1/sandboxes', { timeout_sec: 0 });
      case 'pause':
      case 'resume':
        return call('POST', `/v1/sandboxes/${subject!.id}/${op}`);
      case 'snapshot':
        return call('POST', '/v1/snapshots', { sandbox_id: subject!.id, name: template });
      case 'build': {
        const res = await call('POST', '/v1/builds', {
          template,
          // The first step differs every round: a cached build would end before most kills.
          recipe: [
            `RUN echo ${template} > /tmp/round`,
            'RUN sleep 1',
            'USER root',
            'RUN echo built > /etc/built',
          ],
        });
        buildId = res.body.id as string | undefined;
        if (res.status !== 202) return res;
        // A build's operation is the build itself, until it ends.
        for (;;) {
          const got = await call('GET', `/v1/builds/${buildId}`);
          if (['ready', 'error', 'cancelled'].includes(got.body.status as string) || got.status === 0)
            return got;
          await sleep(100);
        }
      }
    }
  })().then((r) => (answered = r));

  seen.phase = 'none';
  if (delayMs === undefined) {
    await request;
    measured.set(op, Date.now() - started);
  } else {
    await Promise.race([sleep(delayMs), request]);
    await sleep(Math.max(0, delayMs - (Date.now() - started)));
    const inFlight = answered === undefined;
    await kill(victim);
    const journal =
      victim === 'agent' && subject
        ? await stat(path.join(dataDir, 'sandboxes', subject.id, 'operation.json')).then(
            () => true,
            () => false,
          )
        : false;
    seen.phase = inFlight ? (journal ? 'in flight, journal open' : 'in flight') : 'after the answer';
    await request;
    await restart(victim);
  }

  // What the operation left, checked and then removed.
  let outcome = '';
  const note = (o: string) => (seen.outcome = outcome = o);
  if (op === 'create') {
    const id = answered?.status === 201 ? (answered.body.id as string) : undefined;
    if (id) {
      const onHost = await until(
        `created ${id} on the host`,
        2 * RECONCILE_MS,
        async () => (await agentSandboxes()).get(id) ?? 'lost',
      );
      ensure(onHost === 'running', `created sandbox ${id} is ${onHost} after the restart`);
      note('created');
    } else note(`failed (${answered?.status ?? 'none'})`);
    // A create cut short leaves nothing, or a sandbox both sides know (checked by the agreement below);
    // removed whatever the check says, so a disagreement is not also counted as a leak.
    try {
      await checkAgreement();
    } finally {
      for (const [sid] of await agentSandboxes())
        if (!witnesses.has(sid)) await destroy(sid).catch(() => undefined);
    }
  } else if (op === 'build') {
    const id = buildId;
    if (!id) note(`not queued (${answered?.status ?? 'none'})`);
    else {
      const ended = await until(`build ${id} ends (ready or error, not stuck)`, 240_000, async () => {
        const got = await call('GET', `/v1/builds/${id}`);
        return ['ready', 'error', 'cancelled'].includes(got.body.status as string)
          ? (got.body as { status: string; reason?: { message?: string } | null })
          : undefined;
      });
      note(ended.status === 'ready' ? 'ready' : `${ended.status}: ${ended.reason?.message ?? ''}`);
      if (ended.status === 'ready') {
        const made = await call('POST', '/v1/sandboxes', { template, timeout_sec: 0 });
        ensure(
          made.status === 201,
          `a sandbox from built ${template}: ${made.status} ${JSON.stringify(made.body)}`,
        );
        const out = await call('POST', `/v1/sandboxes/${made.body.id as string}/exec`, {
          cmd: 'cat /etc/built',
        });
        ensure(
          out.body.stdout === 'built\n',
          `built ${template} lacks its file: ${JSON.stringify(out.body)}`,
        );
        await destroy(made.body.id as string);
      } else ensure(delayMs !== undefined, `the uninterrupted build failed: ${outcome}`);
    }
  } else {
    note(await settle(subject!));
    if (op === 'snapshot') {
      const listed = await call('GET', '/v1/snapshots');
      const snap = ((listed.body.snapshots ?? []) as { id: string; name: string; status?: string }[]).find(
        (s) => s.name === template,
      );
      note(outcome + (snap ? ', snapshot kept' : ', no snapshot'));
      if (snap) {
        const made = await call('POST', '/v1/sandboxes', { template, timeout_sec: 0 });
        ensure(
          made.status === 201,
          `a sandbox from snapshot ${template}: ${made.status} ${JSON.stringify(made.body)}`,
        );
        await checkAlive({ id: made.body.id as string, pid: subject!.pid }, 'sandbox from the snapshot');
        await destroy(made.body.id as string);
        const del = await call('DELETE', `/v1/snapshots/${snap.id}`);
        ensure(del.status === 204, `delete snapshot ${template}: ${del.status} ${JSON.stringify(del.body)}`);
      }
    }
    await destroy(subject!.id);
  }
}

const witnesses = new Map<string, Subject & { paused: boolean }>();

async function checkWitnesses(): Promise<void> {
  const onHost = await agentSandboxes();
  for (const w of witnesses.values()) {
    const st = onHost.get(w.id);
    ensure(
      st === (w.paused ? 'paused' : 'running'),
      `witness ${w.id} (${w.paused ? 'paused' : 'running'}) is ${st ?? 'lost'}`,
    );
    if (!w.paused) await checkAlive(w, 'running witness');
  }
}

async function main(): Promise<number> {
  console.log(
    `chaos: seed ${seed} (replay: npm run chaos -- --seed ${seed} --rounds ${rounds} --ops ${ops.join(',')} --target ${args.target})`,
  );
  if (process.getuid?.() !== 0) throw new Error('chaos runs real sandboxes: run it as root');
  const database = await createDatabase();
  databaseUrl = database.url;
  await startAgent(true);
  await startServer();
  key = await teamApiKey(server.url, 'chaos@example.com');
  try {
    // Two witnesses live through the whole run: one running (with a process), one paused.
    const running = await newSubject();
    witnesses.set(running.id, { ...running, paused: false });
    const paused = await newSubject();
    const p = await call('POST', `/v1/sandboxes/${paused.id}/pause`);
    if (p.status !== 200) throw new Error(`pause the witness: ${p.status} ${JSON.stringify(p.body)}`);
    witnesses.set(paused.id, { ...paused, paused: true });
    for (const op of ops) {
      await runOp(op, 'agent', undefined);
      console.log(`measured ${op}: ${measured.get(op)} ms (uninterrupted)`);
    }
    await checkAgreement();
    let reference = await footprint();
    const total = rounds * ops.length * victims.length;
    const stopAt = Date.now() + maxMinutes * 60_000;
    rounds: for (let r = 0; r < rounds; r++)
      for (const op of ops)
        for (const victim of victims) {
          if (Date.now() > stopAt) {
            console.log(`--max-minutes ${maxMinutes} reached: ${round} of ${total} rounds ran`);
            break rounds;
          }
          round++;
          const windowMs = measured.get(op)!;
          const delayMs = Math.floor(random() * windowMs);
          const result: RoundResult = { op, victim, delayMs, windowMs, phase: '', outcome: '', findings: [] };
          try {
            await runOp(op, victim, delayMs, result);
            await checkAgreement();
            await checkWitnesses();
          } catch (err) {
            if (!(err instanceof Finding)) throw err;
            result.findings.push(err.message);
          }
          // Nothing but the witnesses should be left: the footprint is what it was before round 1.
          const now = await footprint();
          const diff = footprintDiff(reference, now);
          if (diff) {
            result.findings.push(`leak: ${diff}`);
            reference = now;
          }
          results.push(result);
          console.log(
            `[${round}/${total}] ${op} × ${victim}: kill at ${delayMs} of ${windowMs} ms (${result.phase}) → ${result.outcome || '?'}${result.findings.length ? `\n    FOUND: ${result.findings.join('\n    FOUND: ')}` : ''}`,
          );
        }
    // The paused witness still resumes with its process.
    const w = [...witnesses.values()].find((x) => x.paused)!;
    const resumed = await call('POST', `/v1/sandboxes/${w.id}/resume`);
    const finalFindings: string[] = [];
    if (resumed.status !== 200) finalFindings.push(`paused witness resume: ${resumed.status}`);
    else await checkAlive(w, 'paused witness').catch((err: Error) => finalFindings.push(err.message));
    summarize(finalFindings);
    return results.some((r) => r.findings.length) || finalFindings.length ? 1 : 0;
  } finally {
    for (const [id] of await agentSandboxes().catch(() => new Map<string, string>()))
      await destroy(id).catch(() => undefined);
    await server.kill();
    await agent.stop();
    await database.drop();
    for (const dir of serverDirs) await rm(dir, { recursive: true, force: true });
    const left = await footprint();
    const leftovers = Object.entries(left).filter(([k, v]) => k !== 'sandboxDirs' && v.length);
    if (leftovers.length)
      console.log(`after the agent stopped, left on the host: ${JSON.stringify(leftovers)}`);
    await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function summarize(finalFindings: string[]): void {
  console.log(`\nchaos summary (seed ${seed}): ${results.length} kills`);
  console.log('| op | killed | kills | in flight (journal open) | after the answer | outcomes | findings |');
  console.log('|---|---|---|---|---|---|---|');
  for (const op of ops)
    for (const victim of victims) {
      const rs = results.filter((r) => r.op === op && r.victim === victim);
      if (!rs.length) continue;
      const inFlight = rs.filter((r) => r.phase.startsWith('in flight')).length;
      const journal = rs.filter((r) => r.phase.includes('journal')).length;
      const outcomes = new Map<string, number>();
      for (const r of rs) {
        const o = r.outcome.replace(/: .*/, '') || '?';
        outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
      }
      const found = rs.filter((r) => r.findings.length).length;
      console.log(
        `| ${op} | ${victim} | ${rs.length} | ${inFlight}${victim === 'agent' ? ` (${journal})` : ''} | ${rs.length - inFlight} | ${[...outcomes].map(([o, n]) => `${o} ${n}`).join(', ')} | ${found} |`,
      );
    }
  const leaks = results.filter((r) => r.findings.some((f) => f.startsWith('leak'))).length;
  const lost = results.filter((r) => r.findings.some((f) => /lost/.test(f))).length;
  console.log(
    `leaks: ${leaks}, sandboxes lost: ${lost}, other findings: ${results.filter((r) => r.findings.length).length - leaks - lost}`,
  );
  for (const f of finalFindings) console.log(`FOUND at the end: ${f}`);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error('chaos: the harness failed:', err);
    process.exit(2);
  },
);
