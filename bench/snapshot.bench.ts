// Pause, resume and create-from-snapshot latency through the real agent, next to raw
// `runsc checkpoint` / `runsc restore` of a comparable sandbox (an idle Node.js process; a process
// holding 512 MiB) measured in the same run. Usage: npm run bench:snapshot [-- --rounds 10]
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';
import { installDir, sh, startAgentProcess, type AgentClient } from '../test/e2e/support/agent-process.js';
import { cleanupRawBundle, prepareRawBundle, rawFlags, runDetached } from './raw-runsc.js';
import { printTable, timed } from './stats.js';

const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 10;
const bigRounds = Math.max(3, Math.ceil(rounds / 2));
const runsc = path.join(installDir, 'bin/runsc');

// The same workloads in both: an idle Node.js process (envd is one), and Python holding 512 MiB.
const IDLE = ['/usr/bin/node', '-e', 'setInterval(() => {}, 1000)'];
const TOUCH_512 = [
  '/usr/bin/python3',
  '-c',
  'import os, time\nb = [os.urandom(1 << 20) for _ in range(512)]\nopen("/var/tmp/ready", "w").close()\ntime.sleep(86400)',
];

async function benchRaw(workload: string[], n: number, ready?: string) {
  const bundle = await prepareRawBundle('bench-raw-snapshot', workload, [
    { source: '/usr/bin/node', destination: '/usr/bin/node' },
  ]);
  const flags = rawFlags(bundle);
  const checkpoint: number[] = [];
  const restore: number[] = [];
  try {
    let id = 'snap0';
    await runDetached([runsc, ...flags, 'run', '-bundle', bundle.dir, '-detach', id], bundle.dir);
    if (ready) await waitForFile(path.join(bundle.rootfs, ready));
    else await new Promise((r) => setTimeout(r, 1000));
    for (let i = 0; i < n; i++) {
      const image = path.join(bundle.dir, `image${i}`);
      await mkdir(image);
      const [, c] = await timed(() => exec([runsc, ...flags, 'checkpoint', `--image-path=${image}`, id]));
      checkpoint.push(c);
      id = `snap${i + 1}`;
      const [, r] = await timed(() =>
        runDetached(
          [
            runsc,
            ...flags,
            'restore',
            `--image-path=${image}`,
            '--background',
            '-bundle',
            bundle.dir,
            '-detach',
            id,
          ],
          bundle.dir,
        ),
      );
      restore.push(r);
    }
  } finally {
    await cleanupRawBundle(bundle);
  }
  return { checkpoint, restore };
}

async function waitForFile(file: string) {
  const deadline = Date.now() + 120_000;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function pauseResume(client: AgentClient, id: string, n: number) {
  const pause: number[] = [];
  const resume: number[] = [];
  for (let i = 0; i < n; i++) {
    pause.push((await timed(() => client.pauseSandbox({ sandboxId: id })))[1]);
    // A pause frees the runtime and slot after it answered; a resume right on its heels would wait
    // for that. Real resumes come seconds to days later.
    await new Promise((r) => setTimeout(r, 500));
    resume.push((await timed(() => client.resumeSandbox({ sandboxId: id })))[1]);
    await sh(client, id, 'true');
  }
  return { pause, resume };
}

async function benchAgent() {
  const agent = await startAgentProcess({ LOG_LEVEL: 'warn' }, { asDeployed: true });
  const { client } = agent;
  try {
    const idleId = (await client.createSandbox({})).sandbox!.id;
    const idle = await pauseResume(client, idleId, rounds);

    await client.createSnapshot({ sandboxId: idleId, name: 'bench-snapshot' });
    await client.destroySandbox({ sandboxId: idleId });
    const fromSnapshot: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const [res, ms] = await timed(() => client.createSandbox({ template: 'bench-snapshot' }));
      fromSnapshot.push(ms);
      await client.destroySandbox({ sandboxId: res.sandbox!.id });
    }
    const cold: number[] = [];
    for (let i = 0; i < Math.min(rounds, 5); i++) {
      const [res, ms] = await timed(() => client.createSandbox({}));
      cold.push(ms);
      await client.destroySandbox({ sandboxId: res.sandbox!.id });
    }
    await client.deleteSnapshot({ name: 'bench-snapshot' });

    const bigId = (await client.createSandbox({ memoryMb: 1536 })).sandbox!.id;
    await client.writeFile({ sandboxId: bigId, path: '/tmp/hold.py', content: Buffer.from(TOUCH_512[2]!) });
    await sh(
      client,
      bigId,
      'nohup python3 /tmp/hold.py >/dev/null 2>&1 & while [ ! -f /var/tmp/ready ]; do sleep 0.2; done',
      {
        timeoutMs: 120_000,
      },
    );
    const big = await pauseResume(client, bigId, bigRounds);
    await client.destroySandbox({ sandboxId: bigId });
    return { idle, big, fromSnapshot, cold };
  } finally {
    await agent.stop();
  }
}

console.error(`raw runsc: ${rounds} checkpoint/restore cycles of an idle node process…`);
const rawIdle = await benchRaw(IDLE, rounds);
console.error(`raw runsc: ${bigRounds} cycles of a process holding 512 MiB…`);
const rawBig = await benchRaw(TOUCH_512, bigRounds, '/var/tmp/ready');
console.error('agent: pause/resume, snapshots…');
const agent = await benchAgent();

printTable(`Pause / resume / snapshot, ${rounds} rounds (${bigRounds} with 512 MiB) (ms)`, [
  ['agent PauseSandbox, idle', agent.idle.pause, 'ms'],
  ['raw runsc checkpoint, idle node (baseline)', rawIdle.checkpoint, 'ms'],
  ['agent ResumeSandbox, idle', agent.idle.resume, 'ms'],
  ['raw runsc restore, idle node (baseline)', rawIdle.restore, 'ms'],
  ['agent PauseSandbox, 512 MiB touched', agent.big.pause, 'ms'],
  ['raw runsc checkpoint, 512 MiB (baseline)', rawBig.checkpoint, 'ms'],
  ['agent ResumeSandbox, 512 MiB touched', agent.big.resume, 'ms'],
  ['raw runsc restore, 512 MiB (baseline)', rawBig.restore, 'ms'],
  ['agent CreateSandbox from a snapshot', agent.fromSnapshot, 'ms'],
  ['agent CreateSandbox cold boot (for contrast)', agent.cold, 'ms'],
]);
