// The control plane's overhead: the REST API (`@wrenn/server` over HTTP with an API key, embedded
// PGlite) next to the agent's RPCs called directly, in the same run, on the same agent, iterations
// interleaved (and alternating which goes first) so drift hits both alike. Also a request to envd
// inside the sandbox through the control plane's sandbox proxy, next to one straight to its slot.
// `--host` says how the control plane knows its agent:
//   static      WRENN_AGENT_URL (h2c; the proxy dials slot addresses directly), the default;
//   local       registered as `wrenn up` registers its own agent (mutual TLS; slots dialled directly);
//   registered  registered like a host of another machine (mutual TLS; the proxy tunnels through it).
// A registered agent serves only its control plane, so its baseline is another control plane:
// `--host local --against static` runs both, each with its own agent, interleaved like the rest.
// Usage: npm run bench:api [-- --creates 10 --execs 200 --host static|local|registered --against …]
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { installDir, startAgentProcess, type AgentProcess } from '../test/e2e/support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from '../test/e2e/support/api-client.js';
import { printPercentiles, printTable, timed } from './stats.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : Number(process.argv[at + 1]) || fallback;
};
const MODES = ['static', 'local', 'registered'] as const;
type Mode = (typeof MODES)[number];
const modeArg = (name: string): Mode | undefined => {
  const at = process.argv.indexOf(name);
  if (at < 0) return undefined;
  const value = process.argv[at + 1] as Mode;
  if (!MODES.includes(value)) throw new Error(`${name}: expected one of ${MODES.join(', ')}, got ${value}`);
  return value;
};
const creates = arg('--creates', 10);
const execs = arg('--execs', 200);
const mode = modeArg('--host') ?? 'static';
const against = modeArg('--against');
if (against === mode) throw new Error('--against: a mode other than --host');
const createWarmups = 2;
const execWarmups = 5;

// The same sandbox from both sides: template `base`, the default sizes spelled out.
const SIZE = { vcpus: 1, memory: 512, disk: 4096, timeout: 300 };
const COMMANDS = [
  { cmd: 'true', stdout: '' },
  { cmd: 'echo hi', stdout: 'hi\n' },
];

// Ctrl-C / SIGTERM: finish the current step, then clean up like any other failure.
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (interrupted = true));
const checkInterrupted = () => {
  if (interrupted) throw new Error('interrupted');
};

/** Each create's phases as its `Server-Timing` header gave them, and the rest of the client's wait. */
const createPhases = new Map<string, number[]>();
function recordPhases(which: Mode, clientMs: number, header: string | null): void {
  const add = (name: string, ms: number) => {
    const key = `${which}: ${name}`;
    createPhases.set(key, [...(createPhases.get(key) ?? []), ms]);
  };
  let server = 0;
  for (const part of (header ?? '').split(', ').filter(Boolean)) {
    const [name = '', dur = ''] = part.split(';dur=');
    server += Number(dur);
    add(name, Number(dur));
  }
  // Auth, body parsing, JSON out and the HTTP round trip: what the phases do not cover.
  add('rest (client − phases)', clientMs - server);
}

/** Runs `a` and `b` once each, `a` first on even rounds and `b` first on odd ones. */
async function pair(round: number, a: () => Promise<void>, b: () => Promise<void>) {
  checkInterrupted();
  if (round % 2 === 0) {
    await a();
    await b();
  } else {
    await b();
    await a();
  }
}

/** Warm-ups, then `n` interleaved rounds of both sides; the measured samples of each. */
async function compare(
  warmups: number,
  n: number,
  a: (samples?: number[]) => Promise<void>,
  b: (samples?: number[]) => Promise<void>,
): Promise<{ a: number[]; b: number[] }> {
  for (let i = 0; i < warmups; i++)
    await pair(
      i,
      () => a(),
      () => b(),
    );
  const samples = { a: [] as number[], b: [] as number[] };
  for (let i = 0; i < n; i++)
    await pair(
      i,
      () => a(samples.a),
      () => b(samples.b),
    );
  return samples;
}

type Sample = (samples?: number[]) => Promise<void>;

/** What the bench times, on one side: the API of a control plane, or an agent's RPCs. */
interface Side {
  label: { create: string; exec: (cmd: string) => string; ping: string; proxy: string };
  create: Sample;
  /** Makes the sandbox `exec`, `ping` and `proxy` use. */
  prepare(): Promise<void>;
  exec(cmd: string, stdout: string): Sample;
  ping: Sample;
  proxy: Sample;
  /** Destroys what it made and stops what it started. */
  close(): Promise<void>;
}

/** The agent and its control plane as `--host` (or `--against`) says; data dir per mode. */
async function startSetup(which: Mode): Promise<{ agent: AgentProcess; plane: ControlPlane; dir?: string }> {
  if (which === 'static') {
    const agent = await startAgentProcess({ LOG_LEVEL: 'warn' }, { asDeployed: true });
    return { agent, plane: await startControlPlane(agent.url) };
  }
  // A registered agent keeps credentials in its data dir: one of its own, removed after; and host
  // resources of its own, beside a static one in the same run.
  const dir = path.join(installDir, `bench-api-${which}`);
  await rm(dir, { recursive: true, force: true });
  const plane = await startControlPlane('');
  try {
    // Registration sends the address, so the port is chosen first.
    const port = await freePort();
    const token =
      which === 'local'
        ? (await plane.server.prepareLocalHost({ address: `127.0.0.1:${port}` })).registrationToken!
        : await newHostToken(plane);
    const agent = await startAgentProcess(
      {
        LOG_LEVEL: 'warn',
        WRENN_DIR: dir,
        WRENN_INSTANCE: which === 'local' ? 'bloc' : 'breg',
        WRENN_SLOT_SUBNET: which === 'local' ? '10.13.0.0/16' : '10.14.0.0/16',
        WRENN_AGENT_LISTEN: `127.0.0.1:${port}`,
        WRENN_CONTROL_PLANE_URL: plane.server.url,
        WRENN_REGISTRATION_TOKEN: token,
      },
      // Its client (h2c) cannot reach it: nothing is asked of it directly.
      { keepPaused: true, asDeployed: true },
    );
    return { agent, plane, dir };
  } catch (err) {
    await plane.stop();
    throw err;
  }
}

async function apiSide(which: Mode): Promise<Side & { agent: AgentProcess; sandbox(): string }> {
  const { agent, plane, dir } = await startSetup(which);
  const baseUrl = plane.server.url;
  // Every sandbox made and not yet destroyed.
  const live = new Set<string>();
  let sandboxId = '';
  /** An API call that must succeed; its body. */
  async function call(method: string, url: string, opts: { body?: unknown; key?: string }) {
    const res = await apiCall(baseUrl, method, url, opts);
    if (res.status >= 400) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }
  /** A create that must succeed: the sandbox's id and the server's Server-Timing. */
  async function create(body: unknown): Promise<{ id: string; serverTiming: string | null }> {
    const res = await fetch(`${baseUrl}/v1/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`POST /v1/sandboxes: ${res.status} ${text}`);
    return { id: (JSON.parse(text) as { id: string }).id, serverTiming: res.headers.get('server-timing') };
  }
  const key = await teamApiKey(baseUrl, `bench-${Date.now()}@example.com`);
  const createBody = (timeout_sec: number) => ({
    template: 'base',
    vcpus: SIZE.vcpus,
    memory_mb: SIZE.memory,
    disk_mb: SIZE.disk,
    timeout_sec,
  });
  // Two control planes (`--against`): shorter names, each with its mode.
  const label = against
    ? {
        create: `API create (${which})`,
        exec: (cmd: string) => `API exec \`${cmd}\` (${which})`,
        ping: `API ping (${which})`,
        proxy: `proxy envd /health (${which})`,
      }
    : {
        create: 'API POST /v1/sandboxes',
        exec: (cmd: string) => `API POST /v1/sandboxes/{id}/exec \`${cmd}\``,
        ping: 'API POST /v1/sandboxes/{id}/ping',
        proxy: 'proxy GET envd /health',
      };
  return {
    agent,
    sandbox: () => sandboxId,
    label,
    async create(samples) {
      const [{ id, serverTiming }, ms] = await timed(() => create(createBody(SIZE.timeout)));
      live.add(id);
      samples?.push(ms);
      if (samples) recordPhases(which, ms, serverTiming);
      await call('DELETE', `/v1/sandboxes/${id}`, { key });
      live.delete(id);
    },
    async prepare() {
      sandboxId = (await call('POST', '/v1/sandboxes', { key, body: createBody(0) })).id as string;
      live.add(sandboxId);
    },
    exec: (cmd, stdout) => async (samples) => {
      const [res, ms] = await timed(() =>
        call('POST', `/v1/sandboxes/${sandboxId}/exec`, { key, body: { cmd, timeout_ms: 60_000 } }),
      );
      if (res.exit_code !== 0 || res.stdout !== stdout)
        throw new Error(`API exec ${cmd}: ${JSON.stringify(res)}`);
      samples?.push(ms);
    },
    async ping(samples) {
      const [, ms] = await timed(() => call('POST', `/v1/sandboxes/${sandboxId}/ping`, { key }));
      samples?.push(ms);
    },
    // E2B's routing headers: no DNS needed.
    proxy: (samples) =>
      health(`${baseUrl}/health`, { 'E2b-Sandbox-Id': sandboxId, 'E2b-Sandbox-Port': '49983' }, samples),
    async close() {
      try {
        for (const id of live) await call('DELETE', `/v1/sandboxes/${id}`, { key }).catch(() => undefined);
      } finally {
        // The agent's stop destroys whatever is left.
        await plane.stop();
        await agent.stop();
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** The RPCs of the static setup's agent: on sandboxes it makes, and on the API side's (`sandboxOf`). */
function agentSide(agent: AgentProcess, sandboxOf: () => string): Side {
  const client = agent.client;
  let envd = '';
  return {
    label: {
      create: 'agent CreateSandbox (baseline)',
      exec: (cmd) => `agent Exec \`${cmd}\` (baseline)`,
      ping: 'agent PingSandbox (baseline)',
      proxy: 'envd /health at its slot (baseline)',
    },
    async create(samples) {
      const [res, ms] = await timed(() =>
        client.createSandbox({
          template: 'base',
          vcpus: SIZE.vcpus,
          memoryMb: SIZE.memory,
          diskMb: SIZE.disk,
          timeoutSec: SIZE.timeout,
        }),
      );
      samples?.push(ms);
      await client.destroySandbox({ sandboxId: res.sandbox!.id });
    },
    async prepare() {
      envd = (await client.getSandbox({ sandboxId: sandboxOf() })).sandbox!.envdAddress;
    },
    exec: (cmd, stdout) => async (samples) => {
      const [res, ms] = await timed(() =>
        client.exec({ sandboxId: sandboxOf(), command: { cmd, args: [], timeoutMs: 60_000 } }),
      );
      const out = Buffer.from(res.stdout).toString('utf8');
      if (res.exitCode !== 0 || out !== stdout) throw new Error(`agent exec ${cmd}: ${res.exitCode} ${out}`);
      samples?.push(ms);
    },
    async ping(samples) {
      const [, ms] = await timed(() => client.pingSandbox({ sandboxId: sandboxOf() }));
      samples?.push(ms);
    },
    proxy: (samples) => health(`http://${envd}/health`, {}, samples),
    // Whatever is left (a failure midway) goes when the agent stops.
    close: () => Promise.resolve(),
  };
}

async function health(url: string, headers: Record<string, string>, samples?: number[]): Promise<void> {
  const [res, ms] = await timed(() => fetch(url, { headers }));
  await res.arrayBuffer();
  if (res.status !== 204) throw new Error(`GET ${url}: ${res.status}`);
  samples?.push(ms);
}

/** A platform host added through the API by the first admin: its registration token. */
async function newHostToken(plane: ControlPlane): Promise<string> {
  const base = plane.server.url;
  const login = await apiCall(base, 'POST', '/v1/auth/login', {
    body: { email: 'admin@wrenn.local', password: plane.server.adminPassword },
  });
  const added = await apiCall(base, 'POST', '/v1/hosts', { body: {}, bearer: login.body.token as string });
  if (added.status !== 201) throw new Error(`POST /v1/hosts: ${added.status} ${JSON.stringify(added.body)}`);
  return added.body.registration_token as string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

type Row = Parameters<typeof printTable>[1][number];

/**
 * Measured side `a` against baseline side `b` (b undefined: `a` alone, `--host` registered without
 * `--against`); the table's rows.
 */
async function bench(a: Side, b: Side | undefined): Promise<Row[]> {
  const rows: Row[] = [];
  const both = async (warmups: number, n: number, name: (s: Side) => string, fa: Sample, fb?: Sample) => {
    const s = await compare(warmups, n, fa, fb ?? (() => Promise.resolve()));
    rows.push([name(a), s.a, 'ms']);
    if (!b) return;
    rows.push([name(b), s.b, 'ms']);
    const what = against ? `${mode} − ${against}` : 'API − agent';
    rows.push({ name: `  overhead, median ${what}`, measured: s.a, baseline: s.b });
  };
  console.error(`create: ${createWarmups} warm-ups, then ${creates} each…`);
  await both(createWarmups, creates, (s) => s.label.create, a.create, b?.create);
  await a.prepare();
  await b?.prepare();
  for (const { cmd, stdout } of COMMANDS) {
    console.error(`exec \`${cmd}\`: ${execWarmups} warm-ups, then ${execs} each…`);
    await both(execWarmups, execs, (s) => s.label.exec(cmd), a.exec(cmd, stdout), b?.exec(cmd, stdout));
  }
  // Ping: no process starts in the sandbox, so this is the control plane's fixed cost per request.
  console.error(`ping: ${execWarmups} warm-ups, then ${execs * 2} each…`);
  await both(execWarmups, execs * 2, (s) => s.label.ping, a.ping, b?.ping);
  console.error(`proxy: ${execWarmups} warm-ups, then ${execs * 2} each…`);
  await both(execWarmups, execs * 2, (s) => s.label.proxy, a.proxy, b?.proxy);
  return rows;
}

const sides: Side[] = [];
let rows: Row[];
try {
  const measured = await apiSide(mode);
  sides.push(measured);
  let baseline: Side | undefined;
  if (against) baseline = await apiSide(against);
  else if (mode === 'static') baseline = agentSide(measured.agent, () => measured.sandbox());
  if (baseline) sides.push(baseline);
  rows = await bench(measured, baseline);
} finally {
  for (const side of sides.reverse()) await side.close().catch((err: unknown) => console.error(err));
}
if (createPhases.size > 0)
  printPercentiles(
    'API create, phase by phase (the server\'s Server-Timing; "agent" is its CreateSandbox call) (ms)',
    [...createPhases].map(([name, samples]) => [name, samples, 'ms']),
  );
printTable(
  `Control plane overhead (--host ${mode}${against ? ` --against ${against}` : ''}), ${creates} creates, ${execs} execs per command (ms)`,
  rows,
);
