import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { pollUntil } from '@wrenn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sh,
  startAgentProcess,
  testDataDir,
  withSandbox,
  type AgentClient,
  type AgentProcess,
} from './support/agent-process.js';

// Memory containment (docs/gvisor.md, "Memory limits"): a process that goes past its sandbox's memory
// is killed, the sandbox and its other processes and files live on, and the kill is reported.

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
});

const MiB = 1024 * 1024;

/** Exec a command that should be OOM-killed: the signal shows as "killed" (or 137 through a shell). */
async function expectOomKilled(client: AgentClient, id: string, line: string) {
  const started = Date.now();
  const res = await sh(client, id, line, { timeoutMs: 120_000 });
  const killed = res.exitCode === 137 || (res.exitCode === -1 && !res.timedOut);
  expect(killed, `exit ${res.exitCode}, stderr ${res.stderr.slice(-300)}`).toBe(true);
  return { ...res, ms: Date.now() - started };
}

async function sandboxInfo(client: AgentClient, id: string) {
  return (await client.getSandbox({ sandboxId: id })).sandbox!;
}

/** The agent's memory helper and the eventfds it holds (one per watched sandbox). */
async function memwatchEventfds(agentPid: number): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== agentPid || !stat.includes('(wrenn-memwatch)')) continue;
    let eventfds = 0;
    for (const fd of await readdir(`/proc/${entry}/fd`).catch(() => [] as string[])) {
      if ((await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')).includes('eventfd')) eventfds++;
    }
    return eventfds;
  }
  return undefined;
}

/** A background process and a file that must outlive every OOM kill. */
async function plantSurvivors(client: AgentClient, id: string) {
  await sh(client, id, 'echo precious > /tmp/survivor.txt');
  await sh(client, id, 'setsid nohup sleep 100000 >/dev/null 2>&1 &');
  const pid = (await sh(client, id, 'pgrep -x sleep')).stdout.trim();
  expect(pid).toMatch(/^\d+$/);
  return pid;
}

async function expectSurvivors(client: AgentClient, id: string, sleepPid: string) {
  expect((await sh(client, id, 'cat /tmp/survivor.txt')).stdout).toBe('precious\n');
  expect((await sh(client, id, 'pgrep -x sleep')).stdout.trim()).toBe(sleepPid);
  expect((await sh(client, id, 'echo alive')).stdout).toBe('alive\n');
}

const hostLimit = async (id: string) =>
  Number(await readFile(`/sys/fs/cgroup/memory/wrenn/${id}/memory.limit_in_bytes`, 'utf8'));

describe('memory containment', () => {
  it('a default sandbox: the process that goes past its memory dies, the sandbox lives on', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      const info = await sandboxInfo(agent.client, id);
      // The guest sees its own size; the host lets it go a headroom further.
      expect((await sh(agent.client, id, 'head -1 /proc/meminfo')).stdout).toMatch(
        new RegExp(`MemTotal:\\s+${info.memoryMb * 1024} kB`),
      );
      expect(await hostLimit(id)).toBeGreaterThan(info.memoryMb * MiB);
      expect(info.oomKills).toBe(0);
      const sleepPid = await plantSurvivors(agent.client, id);

      // One huge allocation, five times in a row.
      for (let round = 1; round <= 5; round++) {
        const res = await expectOomKilled(agent.client, id, "python3 -c 'x=bytearray(8<<30)'");
        console.log(`round ${round}: killed after ${res.ms} ms`);
        const after = await sandboxInfo(agent.client, id);
        expect(after.status).toBe(2 /* RUNNING */);
        expect(after.oomKills).toBe(round);
        expect(after.lastOomKill?.command).toContain('python3');
        expect(Number(after.lastOomKill?.memoryBytes)).toBeGreaterThan(100 * MiB);
        await expectSurvivors(agent.client, id, sleepPid);
      }

      // Gradual: 50 MB at a time.
      await expectOomKilled(
        agent.client,
        id,
        "python3 -c 'import time\nxs=[]\nwhile True:\n  xs.append(bytearray(50<<20)); time.sleep(0.05)'",
      );
      // Many processes, each well under the size, together over it: killed until it fits again.
      const many = await sh(
        agent.client,
        id,
        "for i in 1 2 3 4 5 6; do python3 -c 'import time; x=bytearray(150<<20); time.sleep(5)' & done; wait; echo done",
        { timeoutMs: 120_000 },
      );
      expect(many.stdout).toContain('done');
      const last = await sandboxInfo(agent.client, id);
      expect(last.oomKills).toBeGreaterThanOrEqual(8);
      expect(last.status).toBe(2);
      await expectSurvivors(agent.client, id, sleepPid);
      expect(agent.logs()).toContain('out of memory: killed the largest process in the sandbox');
    });
  });

  it('a 256 MiB sandbox, across pause and resume; nothing is left after destroy', async () => {
    const agentPid = agent.child.pid!;
    const before = await memwatchEventfds(agentPid);
    let id = '';
    await withSandbox(agent.client, { memoryMb: 256 }, async (sandboxId) => {
      id = sandboxId;
      expect(await hostLimit(id)).toBeGreaterThan(256 * MiB);
      const sleepPid = await plantSurvivors(agent.client, id);
      await expectOomKilled(agent.client, id, "python3 -c 'x=bytearray(1<<30)'");
      expect((await sandboxInfo(agent.client, id)).oomKills).toBe(1);
      expect(await memwatchEventfds(agentPid)).toBe((before ?? 0) + 1);

      await agent.client.pauseSandbox({ sandboxId: id });
      expect(await memwatchEventfds(agentPid)).toBe(before ?? 0);
      await agent.client.resumeSandbox({ sandboxId: id });
      // The watch came back with the runtime, and so did the headroom.
      expect(await hostLimit(id)).toBeGreaterThan(256 * MiB);
      await expectOomKilled(
        agent.client,
        id,
        "python3 -c 'import time\nxs=[]\nwhile True:\n  xs.append(bytearray(50<<20)); time.sleep(0.05)'",
      );
      const info = await sandboxInfo(agent.client, id);
      expect(info.oomKills).toBe(2);
      expect(info.status).toBe(2);
      await expectSurvivors(agent.client, id, sleepPid);
    });
    // Destroyed: no watch, no cgroup.
    expect(await memwatchEventfds(agentPid)).toBe(before ?? 0);
    await expect(readdir(`/sys/fs/cgroup/memory/wrenn/${id}`)).rejects.toThrow(/ENOENT/);
  });

  it('/dev/shm holds half the memory: a write past it fails, the sandbox lives, and pause/resume keeps the bound', async () => {
    await withSandbox(agent.client, { memoryMb: 512 }, async (id) => {
      const sleepPid = await plantSurvivors(agent.client, id);
      const size = async () =>
        (await sh(agent.client, id, 'df -m --output=size /dev/shm | tail -1')).stdout.trim();
      expect(await size()).toBe('256');
      // Memory no process holds: unbounded, this would have ended the whole sandbox.
      const fill = await sh(agent.client, id, 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=700', {
        timeoutMs: 120_000,
      });
      expect(fill.exitCode).not.toBe(0);
      expect(fill.stderr).toMatch(/No space left on device/);
      await expectSurvivors(agent.client, id, sleepPid);

      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.resumeSandbox({ sandboxId: id });
      expect(await size()).toBe('256');
      // What was written before the pause is still there, up to the bound.
      expect(
        Number((await sh(agent.client, id, 'du -m /dev/shm/fill | cut -f1')).stdout.trim()),
      ).toBeGreaterThan(200);
      await expectSurvivors(agent.client, id, sleepPid);
    });
  });

  it('an agent killed and restarted guards the sandbox it adopts, and keeps its count', async () => {
    const { sandbox } = await agent.client.createSandbox({ memoryMb: 256 });
    const id = sandbox!.id;
    try {
      const sleepPid = await plantSurvivors(agent.client, id);
      await expectOomKilled(agent.client, id, "python3 -c 'x=bytearray(1<<30)'");
      // The count is written to the sandbox's record on disk just after the kill (the command's
      // caller may hear of the kill first): that is what a restarted agent reads.
      const stateFile = path.join(testDataDir, 'sandboxes', id, 'sandbox.json');
      const recorded = await pollUntil(
        async () => ((await readFile(stateFile, 'utf8')).includes('"oomKills": 1') ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      expect(recorded).toBe(true);
      const oldAgentPid = agent.child.pid!;
      await agent.kill();
      // The old agent's helper went with it (its eventfds and the kernel's registrations too).
      expect(await memwatchEventfds(oldAgentPid)).toBeUndefined();
      agent = await startAgentProcess({}, { keepPaused: true });
      expect((await sandboxInfo(agent.client, id)).oomKills).toBe(1);
      expect(await memwatchEventfds(agent.child.pid!)).toBe(1);
      await expectOomKilled(agent.client, id, "python3 -c 'x=bytearray(1<<30)'");
      const info = await sandboxInfo(agent.client, id);
      expect(info.oomKills).toBe(2);
      expect(info.status).toBe(2);
      await expectSurvivors(agent.client, id, sleepPid);
    } finally {
      await agent.client.destroySandbox({ sandboxId: id });
    }
    expect(await memwatchEventfds(agent.child.pid!)).toBe(0);
  });
});
