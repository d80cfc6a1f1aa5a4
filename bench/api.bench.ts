// The control plane's overhead: the REST API (`@wrenn/server` over HTTP with an API key, embedded
// PGlite) next to the agent's RPCs called directly, in the same run, on the same agent, iterations
// interleaved (and alternating which goes first) so drift hits both alike.
// Usage: npm run bench:api [-- --creates 10 --execs 200]
import { startAgentProcess, type AgentProcess } from '../test/e2e/support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from '../test/e2e/support/api-client.js';
import { printTable, timed } from './stats.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : Number(process.argv[at + 1]) || fallback;
};
const creates = arg('--creates', 10);
const execs = arg('--execs', 200);
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
  api: (samples?: number[]) => Promise<void>,
  agent: (samples?: number[]) => Promise<void>,
): Promise<{ api: number[]; agent: number[] }> {
  for (let i = 0; i < warmups; i++)
    await pair(
      i,
      () => api(),
      () => agent(),
    );
  const samples = { api: [] as number[], agent: [] as number[] };
  for (let i = 0; i < n; i++)
    await pair(
      i,
      () => api(samples.api),
      () => agent(samples.agent),
    );
  return samples;
}

async function bench() {
  let agent: AgentProcess | undefined;
  let plane: ControlPlane | undefined;
  // Every sandbox made and not yet destroyed, whichever side made it.
  const live = new Set<string>();
  try {
    agent = await startAgentProcess({ LOG_LEVEL: 'warn' });
    const client = agent.client;
    plane = await startControlPlane(agent.url);
    const baseUrl = plane.server.url;

    /** An API call that must succeed; its body. */
    async function call(method: string, url: string, opts: { body?: unknown; key?: string }) {
      const res = await apiCall(baseUrl, method, url, opts);
      if (res.status >= 400) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    }

    const key = await teamApiKey(baseUrl, `bench-${Date.now()}@example.com`);

    // Create: the API's POST /v1/sandboxes vs the agent's CreateSandbox; each destroyed by the side
    // that made it, untimed.
    const apiCreateBody = (timeout_sec: number) => ({
      template: 'base',
      vcpus: SIZE.vcpus,
      memory_mb: SIZE.memory,
      disk_mb: SIZE.disk,
      timeout_sec,
    });
    const apiCreate = async (samples?: number[]) => {
      const [body, ms] = await timed(() =>
        call('POST', '/v1/sandboxes', { key, body: apiCreateBody(SIZE.timeout) }),
      );
      const id = body.id as string;
      live.add(id);
      samples?.push(ms);
      await call('DELETE', `/v1/sandboxes/${id}`, { key });
      live.delete(id);
    };
    const agentCreate = async (samples?: number[]) => {
      const [res, ms] = await timed(() =>
        client.createSandbox({
          template: 'base',
          vcpus: SIZE.vcpus,
          memoryMb: SIZE.memory,
          diskMb: SIZE.disk,
          timeoutSec: SIZE.timeout,
        }),
      );
      const id = res.sandbox!.id;
      live.add(id);
      samples?.push(ms);
      await client.destroySandbox({ sandboxId: id });
      live.delete(id);
    };
    console.error(`create: ${createWarmups} warm-ups, then ${creates} each through the API and the agent…`);
    const create = await compare(createWarmups, creates, apiCreate, agentCreate);

    // Exec: one sandbox (made through the API, so both sides may use it), the same command lines.
    const sandboxId = (await call('POST', '/v1/sandboxes', { key, body: apiCreateBody(0) })).id as string;
    live.add(sandboxId);
    const exec: Record<string, { api: number[]; agent: number[] }> = {};
    for (const { cmd, stdout } of COMMANDS) {
      const apiExec = async (samples?: number[]) => {
        const [res, ms] = await timed(() =>
          call('POST', `/v1/sandboxes/${sandboxId}/exec`, { key, body: { cmd, timeout_ms: 60_000 } }),
        );
        if (res.exit_code !== 0 || res.stdout !== stdout)
          throw new Error(`API exec ${cmd}: ${JSON.stringify(res)}`);
        samples?.push(ms);
      };
      const agentExec = async (samples?: number[]) => {
        const [res, ms] = await timed(() =>
          client.exec({ sandboxId, command: { cmd, args: [], timeoutMs: 60_000 } }),
        );
        const out = Buffer.from(res.stdout).toString('utf8');
        if (res.exitCode !== 0 || out !== stdout)
          throw new Error(`agent exec ${cmd}: ${res.exitCode} ${out}`);
        samples?.push(ms);
      };
      console.error(`exec \`${cmd}\`: ${execWarmups} warm-ups, then ${execs} each…`);
      const samples = await compare(execWarmups, execs, apiExec, agentExec);
      exec[cmd] = samples;
    }
    // Ping: no process starts in the sandbox, so this is the control plane's fixed cost per request.
    console.error(`ping: ${execWarmups} warm-ups, then ${execs * 2} each…`);
    const ping = await compare(
      execWarmups,
      execs * 2,
      async (samples) => {
        const [, ms] = await timed(() => call('POST', `/v1/sandboxes/${sandboxId}/ping`, { key }));
        samples?.push(ms);
      },
      async (samples) => {
        const [, ms] = await timed(() => client.pingSandbox({ sandboxId }));
        samples?.push(ms);
      },
    );
    await call('DELETE', `/v1/sandboxes/${sandboxId}`, { key });
    live.delete(sandboxId);
    return { create, exec, ping };
  } finally {
    // Whatever is left (a failure midway): straight through the agent, then stop both.
    if (agent && live.size > 0) {
      const onAgent = new Set((await agent.client.listSandboxes({})).sandboxes.map((s) => s.id));
      for (const id of live) {
        if (!onAgent.has(id)) continue;
        await agent.client
          .destroySandbox({ sandboxId: id })
          .catch((err: unknown) => console.error(`could not destroy ${id}:`, err));
      }
    }
    await plane?.stop();
    await agent?.stop();
  }
}

const { create, exec, ping } = await bench();
const execRows = COMMANDS.flatMap(({ cmd }) => {
  const s = exec[cmd]!;
  return [
    [`API POST /v1/sandboxes/{id}/exec \`${cmd}\``, s.api, 'ms'] as [string, number[], string],
    [`agent Exec \`${cmd}\` (baseline)`, s.agent, 'ms'] as [string, number[], string],
    { name: `  overhead, median API − agent`, measured: s.api, baseline: s.agent },
  ];
});
printTable(`Control plane overhead, ${creates} creates, ${execs} execs per command (ms)`, [
  ['API POST /v1/sandboxes', create.api, 'ms'],
  ['agent CreateSandbox (baseline)', create.agent, 'ms'],
  { name: '  overhead, median API − agent', measured: create.api, baseline: create.agent },
  ...execRows,
  ['API POST /v1/sandboxes/{id}/ping', ping.api, 'ms'],
  ['agent PingSandbox (baseline)', ping.agent, 'ms'],
  { name: '  overhead, median API − agent', measured: ping.api, baseline: ping.agent },
]);
