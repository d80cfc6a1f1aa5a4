// Sandbox lifecycle latency and idle memory, through the real agent, next to raw runsc measured in
// the same run on the same machine. Usage: npm run bench:runtime [-- --sandboxes 20]
import { spawn } from 'node:child_process';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';
import { installDir, sh, startAgentProcess, testDataDir } from '../test/e2e/support/agent-process.js';
import { printTable, timed } from './stats.js';

const count = Number(process.argv[process.argv.indexOf('--sandboxes') + 1]) || 20;
const execsPerSandbox = 5;
const runsc = path.join(installDir, 'bin/runsc');
const baseRootfs = path.join(installDir, 'images/base/rootfs');

async function benchAgent() {
  const agent = await startAgentProcess({ LOG_LEVEL: 'warn' });
  const create: number[] = [];
  const execRtt: number[] = [];
  const destroy: number[] = [];
  try {
    // One warm-up so page cache and JIT do not count against the first sample.
    const warm = await agent.client.createSandbox({});
    await agent.client.destroySandbox({ sandboxId: warm.sandbox!.id });
    for (let i = 0; i < count; i++) {
      const [res, ms] = await timed(() => agent.client.createSandbox({}));
      create.push(ms);
      const id = res.sandbox!.id;
      for (let j = 0; j < execsPerSandbox; j++) {
        const [, e] = await timed(() =>
          agent.client.exec({ sandboxId: id, command: { cmd: 'true', args: [] } }),
        );
        execRtt.push(e);
      }
      const [, d] = await timed(() => agent.client.destroySandbox({ sandboxId: id }));
      destroy.push(d);
    }
    const idle = await idleMemory(agent.client);
    return { create, execRtt, destroy, idle };
  } finally {
    await agent.stop();
  }
}

// Idle memory: start several sandboxes, let them settle, then read what their cgroups account and the
// proportional set size of their runsc processes.
async function idleMemory(client: Awaited<ReturnType<typeof startAgentProcess>>['client']) {
  const n = Math.min(10, count);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await client.createSandbox({})).sandbox!.id);
  for (const id of ids) await sh(client, id, 'true');
  await new Promise((r) => setTimeout(r, 5000));
  const cgroupMiB: number[] = [];
  for (const id of ids) {
    const bytes = Number(
      await readFile(`/sys/fs/cgroup/memory/wrenn/${id}/memory.usage_in_bytes`, 'utf8').catch(() => 'NaN'),
    );
    cgroupMiB.push(bytes / 1024 / 1024);
  }
  const pssMiB = (await pssOfRunscProcesses(path.join(testDataDir, 'run/runsc'))) / n;
  for (const id of ids) await client.destroySandbox({ sandboxId: id });
  return { cgroupMiB, pssMiB };
}

async function pssOfRunscProcesses(stateDir: string): Promise<number> {
  let kb = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!cmdline.includes(`--root=${stateDir}`)) continue;
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
    kb += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
  }
  return kb / 1024;
}

// Raw runsc: the same image through an overlay, a netns, `runsc run -detach` of a sleeping process,
// `runsc exec true`, `runsc delete --force`. No envd, no agent: the floor the agent builds on.
async function benchRawRunsc() {
  const dir = path.join(installDir, 'bench-raw');
  const root = path.join(dir, 'state');
  const rootfs = path.join(dir, 'rootfs');
  await cleanupRaw(dir, root, rootfs);
  await mkdir(path.join(dir, 'upper'), { recursive: true });
  await mkdir(path.join(dir, 'work'), { recursive: true });
  await mkdir(rootfs, { recursive: true });
  const overlay = `lowerdir=${baseRootfs},upperdir=${dir}/upper,workdir=${dir}/work`;
  await exec(['mount', '-t', 'overlay', 'overlay', '-o', overlay, rootfs]);
  await exec(['ip', 'netns', 'add', 'wrenn-bench']);
  const spec = {
    ociVersion: '1.0.2',
    process: { args: ['sleep', 'infinity'], cwd: '/', env: ['PATH=/usr/bin:/bin'], user: { uid: 0, gid: 0 } },
    root: { path: rootfs, readonly: false },
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'network', path: '/var/run/netns/wrenn-bench' },
        { type: 'mount' },
      ],
    },
  };
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(spec));
  const flags = [`--root=${root}`, '--network=sandbox', '--overlay2=none'];
  const run: number[] = [];
  const execRtt: number[] = [];
  const del: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const id = `raw${i}`;
      const [, r] = await timed(() =>
        runDetached([runsc, ...flags, 'run', '-bundle', dir, '-detach', id], dir),
      );
      run.push(r);
      for (let j = 0; j < execsPerSandbox; j++) {
        const [, e] = await timed(() => exec([runsc, ...flags, 'exec', id, 'true']));
        execRtt.push(e);
      }
      const [, d] = await timed(() => exec([runsc, ...flags, 'delete', '--force', id]));
      del.push(d);
    }
  } finally {
    await cleanupRaw(dir, root, rootfs);
  }
  return { run, execRtt, del };
}

// `runsc run -detach` hands its stdout/stderr to the sandbox for its whole life: give it a file and
// wait for the process to exit, never for its output to end (as the agent's driver does).
async function runDetached(argv: string[], dir: string): Promise<void> {
  const log = await open(path.join(dir, 'run.log'), 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log.fd, log.fd] });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) throw new Error(`${argv.join(' ')} exited with ${code}`);
  } finally {
    await log.close();
  }
}

// Also runs first: an interrupted earlier run may have left its sandboxes, netns and mounts.
async function cleanupRaw(dir: string, root: string, rootfs: string) {
  const ids = await exec([runsc, `--root=${root}`, 'list', '--quiet'], { allowFailure: true });
  for (const id of ids.stdout.split('\n').filter(Boolean)) {
    await exec([runsc, `--root=${root}`, 'delete', '--force', id], { allowFailure: true });
  }
  await exec(['ip', 'netns', 'del', 'wrenn-bench'], { allowFailure: true });
  for (const m of [rootfs, path.join(root, 'null-netns')]) {
    await exec(['umount', '-l', m], { allowFailure: true });
  }
  await rm(dir, { recursive: true, force: true });
}

console.error(`raw runsc: ${count} sandboxes…`);
const raw = await benchRawRunsc();
console.error(`agent: ${count} sandboxes, then idle memory…`);
const agent = await benchAgent();
printTable(`Sandbox lifecycle, ${count} sandboxes, ${execsPerSandbox} execs each (ms)`, [
  ['agent CreateSandbox (runsc + netns + rootfs + envd)', agent.create, 'ms'],
  ['raw runsc run -detach (baseline)', raw.run, 'ms'],
  ['agent Exec `true` round trip', agent.execRtt, 'ms'],
  ['raw runsc exec true (baseline)', raw.execRtt, 'ms'],
  ['agent DestroySandbox', agent.destroy, 'ms'],
  ['raw runsc delete --force (baseline)', raw.del, 'ms'],
]);
printTable('Idle memory per sandbox (MiB)', [
  ['cgroup memory.usage_in_bytes per sandbox', agent.idle.cgroupMiB, 'MiB'],
  ['PSS of runsc processes, per sandbox (mean)', [agent.idle.pssMiB], 'MiB'],
]);
