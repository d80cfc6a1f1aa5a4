// envd's start inside gVisor, without the agent: bare `runsc run` of the base image (as bench/raw-runsc.ts)
// running, one after another, `sh -c true`, `node -e 0`, a Node HTTP server until it listens, and envd
// until it logs `envd started` (its own `startMs`: bundle loaded, server built, listening, CPU), each
// timed from `runsc run` to exit or to that output. The first two are the floor; the difference between
// the last two is envd's own work. Run under the e2e lock.
// `--variants`: envd again with one part of the agent's spec at a time (cgroup limits, mounts, tini…),
// to see which of them slows envd's start (docs/performance.md, "CPU after the start").
// Usage: npx tsx bench/envd-start.bench.ts [--rounds 8] [--variants]
//   ENVD_DIR=<a dist/ directory> (default apps/envd/dist), NODE_ARGS='--flag …' (given to envd's node)
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
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

interface OciSpec {
  process: { args: string[]; env: string[]; rlimits?: unknown[] };
  mounts: unknown[];
  linux: { cgroupsPath?: string; resources?: unknown };
}

interface Case {
  name: string;
  args: string[];
  /** Output that marks the end; none: the process's exit. */
  until?: string;
  /** A change to the bare spec: one part of what the agent's spec has. */
  spec?: (s: OciSpec) => void;
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

// The cgroup the variants with limits run in; runsc removes it with the sandbox. Not named `wrenn…`:
// the tests' leak checks own those.
const PROBE_CGROUP = 'bench-envd-start';
const envdWith = (name: string, spec: (s: OciSpec) => void): Case => ({
  name: `envd + ${name}`,
  args: [node, ...nodeArgs, '/opt/wrenn/envd/envd.mjs'],
  until: 'envd started',
  spec,
});
const tmpfs = (destination: string, options: string[]) => ({
  destination,
  type: 'tmpfs',
  source: 'tmpfs',
  options,
});
if (process.argv.includes('--variants'))
  cases.push(
    envdWith('memory and pids cgroup', (s) => {
      s.linux.cgroupsPath = `/${PROBE_CGROUP}`;
      s.linux.resources = { memory: { limit: 512 << 20 }, pids: { limit: 9216 } };
    }),
    envdWith('CPU quota of 1 vCPU', (s) => {
      s.linux.cgroupsPath = `/${PROBE_CGROUP}`;
      s.linux.resources = { cpu: { quota: 100_000, period: 100_000 } };
    }),
    envdWith('the agent’s mounts', (s) =>
      s.mounts.push(
        tmpfs('/dev', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
        {
          destination: '/dev/pts',
          type: 'devpts',
          source: 'devpts',
          options: ['nosuid', 'noexec', 'newinstance'],
        },
        tmpfs('/dev/shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=256m']),
        { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
        {
          destination: '/sys/fs/cgroup',
          type: 'cgroup',
          source: 'cgroup',
          options: ['nosuid', 'noexec', 'nodev'],
        },
      ),
    ),
    envdWith('ENVD_TASKS_MAX', (s) => s.process.env.push('ENVD_TASKS_MAX=1024')),
    envdWith('tini', (s) => {
      s.process.args = ['/opt/wrenn/bin/tini', '--', ...s.process.args];
      s.mounts.push({
        destination: '/opt/wrenn/bin/tini',
        type: 'bind',
        source: '/usr/bin/tini-static',
        options: ['rbind', 'ro'],
      });
    }),
    envdWith('RLIMIT_NOFILE 1M', (s) => {
      s.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1 << 20, soft: 1 << 20 }];
    }),
  );

for (const c of cases) {
  const bundle = await prepareRawBundle('bench-envd-start', c.args, [
    { source: process.execPath, destination: node },
    { source: envdDir, destination: '/opt/wrenn/envd' },
  ]);
  if (c.spec) {
    const file = path.join(bundle.dir, 'config.json');
    const spec = JSON.parse(await readFile(file, 'utf8')) as OciSpec;
    c.spec(spec);
    await writeFile(file, JSON.stringify(spec));
  }
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
