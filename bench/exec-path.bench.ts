// Where a `commands.run('true')` goes (issue 13): the same Connect `Process.Start` sent hop by hop —
// straight to envd at the sandbox's slot address, through the control plane's sandbox proxy, and
// through the e2b SDK — with and without the SDK's login shell, next to a bare `runsc exec` of the
// same sandbox. Variants are interleaved round by round so machine noise hits them alike.
// `--setup CMD` runs CMD as root in the sandbox first (to compare a changed image file in place);
// `WRENN_ENVD_DIR` makes the agent start another envd build (to compare one with today's).
// Usage: npm run bench:exec-path [-- --rounds 100 --setup CMD]
import http from 'node:http';
import path from 'node:path';
import { Sandbox } from 'e2b';
import { exec } from '@wrenn/core';
import { installDir, startAgentProcess, testDataDir } from '../test/e2e/support/agent-process.js';
import { startControlPlane, teamApiKey } from '../test/e2e/support/api-client.js';
import { printPercentiles } from './stats.js';

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
};
const rounds = Number(arg('--rounds', '100')) || 100;
const setup = arg('--setup', '');
const warmups = 5;
const runsc = path.join(installDir, 'bin/runsc');

interface Timing {
  /** Until the first stream message (the start event) arrived. */
  startMs: number;
  /** Until the end-of-stream message arrived. */
  totalMs: number;
}

/** One Connect server-stream call over a kept-alive HTTP/1.1 connection, timed as its messages arrive. */
function connectStart(
  agent: http.Agent,
  target: { host: string; port: number; headers: Record<string, string> },
  cmd: string,
  args: string[],
): Promise<Timing> {
  const json = Buffer.from(JSON.stringify({ process: { cmd, args }, stdin: false }));
  const body = Buffer.alloc(5 + json.length);
  body.writeUInt32BE(json.length, 1);
  json.copy(body, 5);
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: target.host,
        port: target.port,
        method: 'POST',
        path: '/process.Process/Start',
        agent,
        headers: {
          ...target.headers,
          'content-type': 'application/connect+json',
          'connect-protocol-version': '1',
          'connect-timeout-ms': '60000',
          'keepalive-ping-interval': '50',
          'content-length': String(body.length),
        },
      },
      (res) => {
        let buf = Buffer.alloc(0);
        let startMs: number | undefined;
        let ended = false;
        res.on('data', (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          while (buf.length >= 5) {
            const len = buf.readUInt32BE(1);
            if (buf.length < 5 + len) break;
            const flags = buf[0]!;
            const msg = buf.subarray(5, 5 + len).toString();
            buf = buf.subarray(5 + len);
            startMs ??= performance.now() - t;
            if (flags & 2) {
              ended = true;
              if (msg !== '{}') reject(new Error(`stream ended with ${msg}`));
            } else if (msg.includes('"end"') && !msg.includes('exit status 0') && msg.includes('exitCode')) {
              reject(new Error(`command failed: ${msg}`));
            }
          }
        });
        res.on('end', () => {
          if (res.statusCode !== 200 || !ended) reject(new Error(`status ${res.statusCode}, ended ${ended}`));
          else resolve({ startMs: startMs ?? NaN, totalMs: performance.now() - t });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function getHealth(
  agent: http.Agent,
  target: { host: string; port: number; headers: Record<string, string> },
) {
  const t = performance.now();
  return new Promise<number>((resolve, reject) => {
    const req = http.request(
      { host: target.host, port: target.port, path: '/health', agent, headers: target.headers },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 204
            ? resolve(performance.now() - t)
            : reject(new Error(`health ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const agentProcess = await startAgentProcess({ LOG_LEVEL: 'warn' }, { asDeployed: true });
const plane = await startControlPlane(agentProcess.url).catch(async (err: unknown) => {
  await agentProcess.stop();
  throw err;
});
const series: Record<string, number[]> = {};
const add = (name: string, ms: number) => (series[name] ??= []).push(ms);
try {
  process.env.E2B_API_URL = plane.server.url;
  process.env.E2B_SANDBOX_URL = plane.server.url;
  process.env.E2B_API_KEY = await teamApiKey(plane.server.url, `exec-path-${Date.now()}@example.com`);
  const sbx = await Sandbox.create('base', { timeoutMs: 300_000 });
  try {
    if (setup) await sbx.commands.run(setup, { user: 'root' });
    const info = await agentProcess.client.getSandbox({ sandboxId: sbx.sandboxId });
    const [envdHost, envdPort] = info.sandbox!.envdAddress.split(':') as [string, string];
    const token = (sbx as unknown as { envdAccessToken: string }).envdAccessToken;
    const server = new URL(plane.server.url);
    const direct = { host: envdHost, port: Number(envdPort), headers: { 'x-access-token': token } };
    const proxied = {
      host: server.hostname,
      port: Number(server.port),
      headers: { 'x-access-token': token, 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': envdPort },
    };
    const keepAlive = () => new http.Agent({ keepAlive: true, maxSockets: 1 });
    const directAgent = keepAlive();
    const proxyAgent = keepAlive();
    // The agent keeps runsc's state under its data dir (layout.runscRoot).
    const runscRoot = path.join(testDataDir, 'run', 'runsc');
    const runtimeId = info.sandbox!.id;

    /** A variant: its name and one timed run, which records its own samples. */
    const variants: [string, () => Promise<void>][] = [];
    const variant = (name: string, run: () => Promise<number | Timing>) =>
      variants.push([
        name,
        async () => {
          const r = await run();
          if (typeof r === 'number') add(name, r);
          else {
            add(name, r.totalMs);
            add(`  ${name}: to the start event`, r.startMs);
          }
        },
      ]);
    const timedCall = async (fn: () => Promise<unknown>) => {
      const t = performance.now();
      await fn();
      return performance.now() - t;
    };
    const login = ['-l', '-c', 'true'];
    variant('envd direct: GET /health', () => getHealth(directAgent, direct));
    variant('proxy: GET /health', () => getHealth(proxyAgent, proxied));
    variant('envd direct: Start /bin/true', () => connectStart(directAgent, direct, '/bin/true', []));
    variant('proxy: Start /bin/true', () => connectStart(proxyAgent, proxied, '/bin/true', []));
    variant('envd direct: Start bash -c true', () =>
      connectStart(directAgent, direct, '/bin/bash', ['-c', 'true']),
    );
    variant('envd direct: Start bash -l -c true (the SDK’s)', () =>
      connectStart(directAgent, direct, '/bin/bash', login),
    );
    variant('proxy: Start bash -l -c true', () => connectStart(proxyAgent, proxied, '/bin/bash', login));
    variant("SDK commands.run('true')", () => timedCall(() => sbx.commands.run('true')));
    variant('agent Exec RPC true', () =>
      timedCall(() =>
        agentProcess.client.exec({ sandboxId: sbx.sandboxId, command: { cmd: 'true', args: [] } }),
      ),
    );
    variant('bare runsc exec true (baseline)', () =>
      timedCall(() => exec([runsc, `--root=${runscRoot}`, 'exec', runtimeId, '/bin/true'])),
    );
    for (let i = 0; i < warmups + rounds; i++) {
      // Rotate the order each round: no variant always runs right after the same other one.
      for (let j = 0; j < variants.length; j++) {
        const [, run] = variants[(i + j) % variants.length]!;
        await run();
      }
      if (i === warmups - 1) for (const k of Object.keys(series)) series[k] = [];
    }
  } finally {
    await sbx.kill();
  }
} finally {
  await plane.stop().catch((err: unknown) => console.error(err));
  await agentProcess.stop().catch((err: unknown) => console.error(err));
}

printPercentiles(
  `Exec path, ${rounds} rounds interleaved (ms)`,
  Object.entries(series).map(([name, samples]) => [name, samples, 'ms']),
  1,
);
