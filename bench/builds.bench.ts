// Template builds: what the build engine costs over doing the same steps by hand. In the same run,
// rounds interleaved: (a) a build through `POST /v1/builds` (cache skipped) from request to `ready`;
// (b) the same steps by hand through the same API — create a sandbox, upload and unpack the files,
// run each command, snapshot it; (c) the same build again with the cache (every step reused).
// The client polls the build every 100 ms, so (a) and (c) include up to that much waiting.
// Usage: npm run bench:builds [-- --rounds 5]
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAgentProcess, type AgentProcess } from '../test/e2e/support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from '../test/e2e/support/api-client.js';
import { printPercentiles } from './stats.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : Number(process.argv[at + 1]) || fallback;
};
const rounds = arg('--rounds', 5);

// Work a real recipe does, kept on this machine: files written, a compile-like pause, a copy.
const COMMANDS = [
  'dd if=/dev/urandom of=/home/user/blob bs=1M count=64 status=none',
  'python3 -c "import compileall, sys; compileall.compile_dir(sys.prefix + \'/lib/python3.11/json\', quiet=1)"',
  'sleep 2',
];
const SIZES = { vcpus: 2, memory_mb: 1024, disk_mb: 4096 };

let agent: AgentProcess | undefined;
let plane: ControlPlane | undefined;
const work = await mkdtemp(path.join(tmpdir(), 'wrenn-bench-builds-'));
try {
  agent = await startAgentProcess({}, { asDeployed: true });
  plane = await startControlPlane(agent.url);
  const base = plane.server.url;
  const key = await teamApiKey(base, 'bench-builds@example.com');
  const call = (method: string, url: string, body?: unknown) => apiCall(base, method, url, { key, body });

  // The context: 32 MiB in a few files.
  execFileSync('sh', [
    '-c',
    `mkdir -p ${work}/ctx/app && head -c ${32 << 20} /dev/urandom > ${work}/ctx/app/data.bin && echo hi > ${work}/ctx/app/readme`,
  ]);
  execFileSync('tar', ['-cf', `${work}/ctx.tar`, '-C', `${work}/ctx`, 'app']);
  const tar = await readFile(`${work}/ctx.tar`);
  const hash = createHash('sha256').update(tar).digest('hex');
  const up = await fetch(`${base}/v1/builds/files/${hash}`, {
    method: 'PUT',
    headers: { 'x-api-key': key },
    body: tar,
  });
  if (up.status !== 200) throw new Error(`upload: ${up.status} ${await up.text()}`);
  const recipe = [...COMMANDS.map((c) => `RUN ${c}`), 'COPY app /home/user/app'];

  async function build(name: string, skipCache: boolean): Promise<number> {
    const t = performance.now();
    const res = await call('POST', '/v1/builds', {
      template: name,
      recipe,
      context_hash: hash,
      skip_cache: skipCache,
      ...SIZES,
    });
    if (res.status !== 202) throw new Error(`build: ${res.status} ${JSON.stringify(res.body)}`);
    for (;;) {
      const got = await call('GET', `/v1/builds/${res.body.id as string}`);
      if (got.body.status === 'ready') return performance.now() - t;
      if (['error', 'cancelled'].includes(got.body.status as string))
        throw new Error(`build: ${JSON.stringify(got.body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function byHand(n: number): Promise<number> {
    const t = performance.now();
    const created = await call('POST', '/v1/sandboxes', { template: 'base', ...SIZES, timeout_sec: 0 });
    if (created.status !== 201) throw new Error(`create: ${JSON.stringify(created.body)}`);
    const id = created.body.id as string;
    try {
      for (const cmd of COMMANDS) {
        const out = await call('POST', `/v1/sandboxes/${id}/exec`, {
          cmd: '/bin/sh',
          args: ['-c', cmd],
          timeout_ms: 600_000,
        });
        if (out.body.exit_code !== 0) throw new Error(`exec ${cmd}: ${JSON.stringify(out.body)}`);
      }
      const put = await fetch(`${base}/v1/sandboxes/${id}/files?path=/tmp/ctx.tar`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
        body: tar,
      });
      if (put.status !== 200) throw new Error(`upload: ${put.status} ${await put.text()}`);
      const unpack = await call('POST', `/v1/sandboxes/${id}/exec`, {
        cmd: '/bin/sh',
        args: ['-c', 'tar -xf /tmp/ctx.tar -C /home/user && rm /tmp/ctx.tar'],
      });
      if (unpack.body.exit_code !== 0) throw new Error(`unpack: ${JSON.stringify(unpack.body)}`);
      const snap = await call('POST', '/v1/snapshots', { sandbox_id: id, name: `byhand${n}` });
      if (snap.status !== 201) throw new Error(`snapshot: ${JSON.stringify(snap.body)}`);
      const elapsed = performance.now() - t;
      await call('DELETE', `/v1/snapshots/${snap.body.id as string}`);
      return elapsed;
    } finally {
      await call('DELETE', `/v1/sandboxes/${id}`);
    }
  }

  const samples = { build: [] as number[], hand: [] as number[], cached: [] as number[] };
  // One of each first, not counted (first-touch costs: page cache, JIT).
  await build('warm', true);
  await byHand(-1);
  for (let i = 0; i < rounds; i++) {
    const a = async () => samples.build.push(await build(`b${i}`, true));
    const b = async () => samples.hand.push(await byHand(i));
    if (i % 2) {
      await b();
      await a();
    } else {
      await a();
      await b();
    }
    samples.cached.push(await build(`b${i}`, false));
    console.log(
      `round ${i + 1}/${rounds}: build ${samples.build.at(-1)!.toFixed(0)} ms, by hand ${samples.hand.at(-1)!.toFixed(0)} ms, cached ${samples.cached.at(-1)!.toFixed(0)} ms`,
    );
  }
  printPercentiles(
    `template builds, ${rounds} rounds (${COMMANDS.length} RUN steps + a 32 MiB COPY, snapshot output)`,
    [
      ['build through /v1/builds (cache skipped)', samples.build, 'ms'],
      ['the same steps by hand through /v1 + snapshot', samples.hand, 'ms'],
      ['rebuild, every step from the cache', samples.cached, 'ms'],
    ],
    0,
  );
  const median = (s: number[]) => [...s].sort((x, y) => x - y)[Math.floor(s.length / 2)]!;
  console.log(
    `\nbuild / by hand (medians): ${(median(samples.build) / median(samples.hand)).toFixed(2)}× (aim ≤ 1.2×)`,
  );
  console.log(
    `cached rebuild / first build (medians): ${((median(samples.cached) / median(samples.build)) * 100).toFixed(1)} % (aim ≤ 10 %)`,
  );
  await writeFile(path.join(work, 'done'), '');
} finally {
  await plane?.stop();
  await agent?.stop();
  await rm(work, { recursive: true, force: true });
}
