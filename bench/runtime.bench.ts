// Sandbox lifecycle latency and idle memory, through the real agent, next to raw runsc measured in
// the same run on the same machine. Usage: npm run bench:runtime [-- --sandboxes 20]
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';
import { installDir, sh, startAgentProcess, testDataDir } from '../test/e2e/support/agent-process.js';
import { cleanupRawBundle, prepareRawBundle, rawFlags, runDetached } from './raw-runsc.js';
import { printTable, timed } from './stats.js';

const count = Number(process.argv[process.argv.indexOf('--sandboxes') + 1]) || 20;
const execsPerSandbox = 5;
const runsc = path.join(installDir, 'bin/runsc');

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

// Raw runsc: `runsc run -detach` of a sleeping process, `runsc exec true`, `runsc delete --force`.
async function benchRawRunsc() {
  const bundle = await prepareRawBundle('bench-raw', ['sleep', 'infinity']);
  const flags = rawFlags(bundle);
  const run: number[] = [];
  const execRtt: number[] = [];
  const del: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const id = `raw${i}`;
      const [, r] = await timed(() =>
        runDetached([runsc, ...flags, 'run', '-bundle', bundle.dir, '-detach', id], bundle.dir),
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
    await cleanupRawBundle(bundle);
  }
  return { run, execRtt, del };
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
