// envd's start inside gVisor, without the agent: bare `runsc run` of the base image (as bench/raw-runsc.ts)
// running, one after another, `sh -c true`, `node -e 0`, a Node HTTP server until it listens, and envd
// until it logs `envd started` (its own `startMs`: bundle loaded, server built, listening, CPU), each
// timed from `runsc run` to exit or to that output. The first two are the floor; the difference between
// the last two is envd's own work. Run under the e2e lock.
// Usage: npx tsx bench/envd-start.bench.ts [--rounds 8]
//   ENVD_DIR=<a dist/ directory> (default apps/envd/dist), NODE_ARGS='--flag …' (given to envd's node)
import { spawn } from 'node:child_process';
import path from 'node:path';
import { installDir, repoRoot } from '../test/e2e/support/agent-process.js';
import { cleanupRawBundle, prepareRawBundle, rawFlags } from './raw-runsc.js';
import { percentiles } from './stats.js';

const runsc = path.join(installDir, 'bin/runsc');
const at = process.argv.indexOf('--rounds');
const rounds = (at >= 0 && Number(process.argv[at + 1])) || 8;
const envdDir = process.env.ENVD_DIR ?? path.join(repoRoot, 'apps/envd/dist');
const node = '/opt/wrenn/bin/node';
const nodeArgs = process.env.NODE_ARGS ? process.env.NODE_ARGS.split(' ') : [];

interface Case {
  name: string;
  args: string[];
  /** Output that marks the end; none: the process's exit. */
  until?: string;
}
const cases: Case[] = [
  { name: 'sh -c true, to exit', args: ['/bin/sh', '-c', 'true'] },
  { name: 'node -e 0, to exit', args: [node, '-e', '0'] },
  {
    name: 'node http server, to listening',
    args: [node, '-e', "require('http').createServer().listen(49983, () => console.log('UP'))"],
    until: 'UP',
  },
  {
    name: 'envd, to `envd started`',
    args: [node, ...nodeArgs, '/opt/wrenn/envd/envd.mjs'],
    until: 'envd started',
  },
];

for (const c of cases) {
  const bundle = await prepareRawBundle('bench-envd-start', c.args, [
    { source: process.execPath, destination: node },
    { source: envdDir, destination: '/opt/wrenn/envd' },
  ]);
  const samples: number[] = [];
  const startLines: string[] = [];
  try {
    // One warm-up round (page cache).
    for (let i = 0; i < rounds + 1; i++) {
      const t = performance.now();
      const child = spawn(runsc, [...rawFlags(bundle), 'run', '-bundle', bundle.dir, `es${i}`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      const ms = await new Promise<number>((resolve, reject) => {
        const on = (b: Buffer) => {
          out += b.toString();
          if (c.until && out.includes(c.until)) resolve(performance.now() - t);
        };
        child.stdout.on('data', on);
        child.stderr.on('data', on);
        child.once('close', (code) =>
          c.until ? reject(new Error(`exited with ${code}: ${out}`)) : resolve(performance.now() - t),
        );
      });
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('close', r));
        await new Promise((r) =>
          spawn(runsc, [...rawFlags(bundle), 'delete', '--force', `es${i}`]).once('close', r),
        );
      }
      if (i > 0) {
        samples.push(ms);
        const line = out.split('\n').find((l) => l.includes('envd started'));
        if (line) startLines.push(line);
      }
    }
  } finally {
    await cleanupRawBundle(bundle);
  }
  const p = percentiles(samples);
  console.log(
    `${c.name.padEnd(34)} p50 ${p.p50.toFixed(0).padStart(5)}  p95 ${p.p95.toFixed(0).padStart(5)} ms`,
  );
  if (startLines.length) {
    const fields = startLines.map(
      (l) => JSON.parse(l) as { startMs: Record<string, number>; codeCache?: string },
    );
    const keys = Object.keys(fields[0]!.startMs);
    const med = keys.map((k) => `${k} ${percentiles(fields.map((f) => f.startMs[k] ?? 0)).p50.toFixed(0)}`);
    console.log(
      `  envd's own startMs (p50, since its process began): ${med.join(', ')}; code cache ${fields[0]!.codeCache ?? '?'}`,
    );
  }
}
