import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hostagent } from '@wrenn/contracts';
import {
  sh,
  sleep,
  startAgentProcess,
  testDataDir,
  type AgentClient,
  type AgentProcess,
} from './support/agent-process.js';
import { EMPTY_HOST_STATE, wrennHostState } from './support/host-state.js';

const { PAUSED, RUNNING } = hostagent.SandboxStatus;
const templatesDir = path.join(testDataDir, 'templates');
const runscRoot = `--root=${path.join(testDataDir, 'run/runsc')}`;

// One agent at a time; each test kills it (SIGKILL, nothing cleaned up) and starts the next on the
// same data dir, which must take the sandboxes over.
let agent: AgentProcess;

async function restart(): Promise<AgentProcess> {
  await agent.kill();
  agent = await startAgentProcess({}, { keepPaused: true });
  return agent;
}

/**
 * A sandbox with a counter process (its pid in /tmp/counter.pid) and a file of its own. `holdMb`:
 * a process holding that much random memory, so a checkpoint or restore lasts long enough to be
 * caught in /proc (an idle sandbox saves in ~140 ms).
 */
async function sandboxWithWork(client: AgentClient, holdMb = 0): Promise<string> {
  const { sandbox } = await client.createSandbox(holdMb ? { memoryMb: 512 + holdMb * 2 } : {});
  const id = sandbox!.id;
  if (holdMb) {
    await sh(
      client,
      id,
      `nohup python3 -c "import os, time; b = [os.urandom(1 << 20) for _ in range(${holdMb})]; open('/tmp/held', 'w').close(); time.sleep(1e9)" >/dev/null 2>&1 &`,
    );
    await sh(client, id, 'while [ ! -f /tmp/held ]; do sleep 0.1; done', { timeoutMs: 120_000 });
  }
  await client.writeFile({ sandboxId: id, path: '/home/user/keep.txt', content: Buffer.from(`kept ${id}`) });
  await sh(
    client,
    id,
    "nohup sh -c 'echo $$ > /tmp/counter.pid; i=0; while true; do i=$((i+1)); echo $i > /tmp/count.tmp; mv /tmp/count.tmp /tmp/count; sleep 0.1; done' >/dev/null 2>&1 &",
  );
  await sh(client, id, 'while [ ! -s /tmp/count ]; do sleep 0.05; done');
  return id;
}

const count = async (client: AgentClient, id: string) =>
  Number((await sh(client, id, 'cat /tmp/count')).stdout.trim());

/** The sandbox works: the same counter process still counts, the file is there, envd answers. */
async function expectWorking(client: AgentClient, id: string, pidBefore?: string): Promise<void> {
  const { sandbox } = await client.getSandbox({ sandboxId: id });
  expect(sandbox?.status).toBe(RUNNING);
  const file = await client.readFile({ sandboxId: id, path: '/home/user/keep.txt' });
  expect(Buffer.from(file.content).toString()).toBe(`kept ${id}`);
  const pid = (await sh(client, id, 'cat /tmp/counter.pid')).stdout.trim();
  if (pidBefore) expect(pid).toBe(pidBefore);
  expect((await sh(client, id, `kill -0 ${pid} && echo alive`)).stdout).toBe('alive\n');
  const first = await count(client, id);
  await sleep(400);
  expect(await count(client, id)).toBeGreaterThan(first);
}

/** Running or paused after a restart (never gone); a paused one is resumed. Then it works. */
async function expectRunningOrPaused(id: string, why: string): Promise<'running' | 'paused'> {
  const { sandbox } = await agent.client.getSandbox({ sandboxId: id });
  expect([RUNNING, PAUSED], `${why}: ${sandbox?.statusReason}`).toContain(sandbox?.status);
  const was = sandbox?.status === PAUSED ? 'paused' : 'running';
  if (was === 'paused') await agent.client.resumeSandbox({ sandboxId: id });
  await expectWorking(agent.client, id);
  return was;
}

async function waitFor(what: string, found: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await found())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Whether a `runsc <subcommand>` of the test agent runs (found in /proc by its --root). */
async function runscRunning(subcommand: string): Promise<boolean> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes(runscRoot) && argv.includes(subcommand)) return true;
  }
  return false;
}

const sandboxFile = (id: string, name: string) => path.join(testDataDir, 'sandboxes', id, name);

beforeAll(async () => {
  await rm(templatesDir, { recursive: true, force: true });
  agent = await startAgentProcess();
});

// A test that failed leaves its sandboxes: the next one starts without them.
afterEach(async () => {
  for (const { id } of (await agent.client.listSandboxes({})).sandboxes)
    await agent.client.destroySandbox({ sandboxId: id });
});

afterAll(async () => {
  for (const { id } of (await agent.client.listSandboxes({})).sandboxes)
    await agent.client.destroySandbox({ sandboxId: id });
  await agent.stop();
  await rm(templatesDir, { recursive: true, force: true });
  expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
});

describe('sandboxes survive a kill -9 of the agent', () => {
  it('a running sandbox is adopted: same id, same counter process, its file, its slot (not given to another)', async () => {
    const id = await sandboxWithWork(agent.client);
    const { sandbox: before } = await agent.client.getSandbox({ sandboxId: id });
    const pid = (await sh(agent.client, id, 'cat /tmp/counter.pid')).stdout.trim();
    // A server of the user's on the slot address: the slot's network keeps working.
    await sh(agent.client, id, 'nohup python3 -m http.server 8123 >/dev/null 2>&1 &');
    const slotIp = before!.envdAddress.split(':')[0]!;
    await waitFor(
      'the user server',
      async () => (await fetch(`http://${slotIp}:8123/`).catch(() => undefined))?.ok === true,
    );
    const counted = await count(agent.client, id);

    await restart();
    expect(agent.logs()).not.toMatch(/removed leftover runsc sandboxes/);
    const { sandbox: after } = await agent.client.getSandbox({ sandboxId: id });
    expect(after).toMatchObject({
      status: RUNNING,
      envdAddress: before!.envdAddress,
      envdAccessToken: before!.envdAccessToken,
      createdAt: before!.createdAt,
    });
    await expectWorking(agent.client, id, pid);
    expect(await count(agent.client, id)).toBeGreaterThan(counted);
    expect((await fetch(`http://${slotIp}:8123/`)).ok).toBe(true);
    // A new sandbox gets another slot.
    const { sandbox: other } = await agent.client.createSandbox({});
    expect(other!.envdAddress).not.toBe(before!.envdAddress);
    expect((await sh(agent.client, other!.id, 'echo ok')).stdout).toBe('ok\n');
    await agent.client.destroySandbox({ sandboxId: other!.id });
    // The adopted sandbox pauses and resumes as any other.
    await agent.client.pauseSandbox({ sandboxId: id });
    await agent.client.resumeSandbox({ sandboxId: id });
    await expectWorking(agent.client, id, pid);
    await agent.client.destroySandbox({ sandboxId: id });
  });

  it('WRENN_AGENT_ON_STOP=keep: a SIGTERM leaves the running sandbox for the next agent (an upgrade)', async () => {
    await agent.stop();
    agent = await startAgentProcess({ WRENN_AGENT_ON_STOP: 'keep' });
    const id = await sandboxWithWork(agent.client);
    const pid = (await sh(agent.client, id, 'cat /tmp/counter.pid')).stdout.trim();
    await agent.stop();
    expect(agent.logs()).toMatch(/sandboxes keep running for the next agent/);
    expect((await wrennHostState(testDataDir)).netns.length).toBe(1);
    agent = await startAgentProcess({}, { keepPaused: true });
    await expectWorking(agent.client, id, pid);
    await agent.client.destroySandbox({ sandboxId: id });
  });

  it('a paused sandbox stays paused and resumes after the restart', async () => {
    const id = await sandboxWithWork(agent.client);
    const pid = (await sh(agent.client, id, 'cat /tmp/counter.pid')).stdout.trim();
    await agent.client.pauseSandbox({ sandboxId: id });
    await restart();
    expect((await agent.client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(PAUSED);
    await agent.client.resumeSandbox({ sandboxId: id });
    await expectWorking(agent.client, id, pid);
    await agent.client.destroySandbox({ sandboxId: id });
  });

  it('a running sandbox whose runtime died while the agent was down is stopped, with the reason, and released', async () => {
    const { sandbox } = await agent.client.createSandbox({});
    const id = sandbox!.id;
    await agent.kill();
    // The sandbox's own process goes too (found by its container id, the last argument).
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''))
        .split('\0')
        .filter(Boolean);
      if (argv[0] === 'runsc-sandbox' && argv.at(-1) === id) process.kill(Number(pid), 'SIGKILL');
    }
    agent = await startAgentProcess({}, { keepPaused: true });
    const { sandbox: after } = await agent.client.getSandbox({ sandboxId: id });
    expect(after?.status).toBe(hostagent.SandboxStatus.STOPPED);
    expect(after?.statusReason).toMatch(/stopped while the agent was down/);
    // Its slot and directory are gone: only the running sandboxes' remain.
    const state = await wrennHostState(testDataDir);
    const running = (await agent.client.listSandboxes({})).sandboxes.filter((s) => s.status === RUNNING);
    expect(state.netns.length).toBe(running.length);
    expect(state.sandboxDirs).not.toContain(id);
    await agent.client.destroySandbox({ sandboxId: id });
  });
});

describe('an operation cut short by the agent dying ends running or paused, never gone', () => {
  // Where the agent dies: as the pause begins (its journal written), while `runsc checkpoint` runs,
  // once the checkpoint is complete, and at random moments.
  const pausePoints: [string, (id: string) => Promise<void>, number?][] = [
    [
      'as the pause begins',
      (id) => waitFor('the journal', () => Promise.resolve(existsSync(sandboxFile(id, 'operation.json')))),
    ],
    ['during runsc checkpoint', () => waitFor('runsc checkpoint', () => runscRunning('checkpoint')), 384],
    [
      'with the checkpoint complete',
      (id) => waitFor('the checkpoint', () => Promise.resolve(existsSync(sandboxFile(id, 'checkpoint')))),
    ],
    ...[1, 2, 3].map((n): [string, (id: string) => Promise<void>, number?] => [
      `at random (${n})`,
      () => sleep(Math.floor(Math.random() * 400)),
    ]),
  ];
  for (const [when, point, holdMb] of pausePoints) {
    it(`a pause, ${when}`, async () => {
      const id = await sandboxWithWork(agent.client, holdMb);
      const pause = agent.client.pauseSandbox({ sandboxId: id }).catch(() => undefined);
      await point(id);
      await restart();
      await pause;
      const was = await expectRunningOrPaused(id, `pause cut short ${when}`);
      console.log(`pause cut short ${when}: ${was} after the restart`);
      await agent.client.destroySandbox({ sandboxId: id });
    });
  }

  const resumePoints: [string, (id: string) => Promise<void>, number?][] = [
    [
      'as the resume begins',
      (id) => waitFor('the journal', () => Promise.resolve(existsSync(sandboxFile(id, 'operation.json')))),
    ],
    ['during runsc restore', () => waitFor('runsc restore', () => runscRunning('restore')), 384],
    ...[1, 2].map((n): [string, (id: string) => Promise<void>, number?] => [
      `at random (${n})`,
      () => sleep(Math.floor(Math.random() * 600)),
    ]),
  ];
  for (const [when, point, holdMb] of resumePoints) {
    it(`a resume, ${when}`, async () => {
      const id = await sandboxWithWork(agent.client, holdMb);
      await agent.client.pauseSandbox({ sandboxId: id });
      const resume = agent.client.resumeSandbox({ sandboxId: id }).catch(() => undefined);
      await point(id);
      await restart();
      await resume;
      const was = await expectRunningOrPaused(id, `resume cut short ${when}`);
      console.log(`resume cut short ${when}: ${was} after the restart`);
      await agent.client.destroySandbox({ sandboxId: id });
    });
  }

  const snapshotPoints: [string, () => Promise<void>][] = [
    [
      'while the template is staged',
      () =>
        waitFor('the staging dir', async () =>
          (await readdir(templatesDir).catch(() => [] as string[])).some((e) => e.startsWith('.staging-')),
        ),
    ],
    ['at random', () => sleep(Math.floor(Math.random() * 600))],
  ];
  for (const [when, point] of snapshotPoints) {
    it(`a snapshot, ${when}: the source is fine, nothing staged is left`, async () => {
      const id = await sandboxWithWork(agent.client);
      const snapshot = agent.client
        .createSnapshot({ sandboxId: id, name: 'cut-short' })
        .catch(() => undefined);
      await point();
      await restart();
      await snapshot;
      expect(
        (await readdir(templatesDir).catch(() => [] as string[])).filter((e) => e.startsWith('.')),
      ).toEqual([]);
      // It was running: whatever point the kill hit, the next agent has it running again.
      expect(await expectRunningOrPaused(id, `snapshot cut short ${when}`)).toBe('running');
      await agent.client.destroySandbox({ sandboxId: id });
      // Complete or absent: a template made before the agent died works like any.
      if (existsSync(path.join(templatesDir, 'cut-short')))
        await agent.client.deleteSnapshot({ name: 'cut-short' });
    });
  }
});

describe('a flatten cut short by the agent dying', () => {
  it('leaves the sandbox running (thawed) and nothing staged', async () => {
    const id = await sandboxWithWork(agent.client);
    const flatten = agent.client
      .flattenRootfs({ sandboxId: id, name: 'flat-cut-short' })
      .catch(() => undefined);
    await waitFor('the staging dir', async () =>
      (await readdir(templatesDir).catch(() => [] as string[])).some((e) => e.startsWith('.staging-')),
    );
    await restart();
    await flatten;
    expect(
      (await readdir(templatesDir).catch(() => [] as string[])).filter((e) => e.startsWith('.')),
    ).toEqual([]);
    expect((await agent.client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(RUNNING);
    await expectWorking(agent.client, id);
    await agent.client.destroySandbox({ sandboxId: id });
    if (existsSync(path.join(templatesDir, 'flat-cut-short')))
      await agent.client.deleteSnapshot({ name: 'flat-cut-short' });
  });
});

describe('adoption time', () => {
  it('N running sandboxes are taken over at start (measured, not asserted)', async () => {
    // The same restart with nothing to adopt, for comparison.
    await agent.kill();
    const emptyStarted = performance.now();
    agent = await startAgentProcess({}, { keepPaused: true });
    const emptyMs = Math.round(performance.now() - emptyStarted);
    const n = 6;
    const ids = await Promise.all(Array.from({ length: n }, () => agent.client.createSandbox({}))).then((r) =>
      r.map((c) => c.sandbox!.id),
    );
    await agent.kill();
    const started = performance.now();
    agent = await startAgentProcess({}, { keepPaused: true });
    const readyMs = Math.round(performance.now() - started);
    const took = /"running":\[[^\]]*\][^\n]*"ms":(\d+)[^\n]*took over the sandboxes/.exec(agent.logs());
    console.log(
      `adoption of ${n} running sandboxes: ${took?.[1]} ms in the agent, ${readyMs} ms to listening (${emptyMs} ms with none)`,
    );
    for (const id of ids) {
      expect((await agent.client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(RUNNING);
      expect((await sh(agent.client, id, 'echo ok')).stdout).toBe('ok\n');
    }
    await Promise.all(ids.map((sandboxId) => agent.client.destroySandbox({ sandboxId })));
  });
});
