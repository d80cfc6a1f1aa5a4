import { describe, expect, it } from 'vitest';
import { hostagent } from '@wrenn/contracts';
import { sh, startAgentProcess, testDataDir, type AgentProcess } from './support/agent-process.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

const PREPARED = 2;

/** The slot namespaces on the host (its own tables) once the agent's refills settle at `count`. */
async function expectNetnsCount(count: number): Promise<void> {
  await eventually(async () => {
    const state = await wrennHostState(testDataDir);
    expect(state.netns).toHaveLength(count);
    expect(state.interfaces).toHaveLength(count);
  }, 20_000);
}

async function start(): Promise<AgentProcess> {
  return startAgentProcess({ WRENN_PREPARED_SLOTS: String(PREPARED) });
}

describe('network slots built ahead (real gVisor)', () => {
  it('creates and resumes take them; refills follow; stopping the agent removes them', async () => {
    const agent = await start();
    try {
      // Built while the agent is idle: namespaces and host links, and no sandbox.
      await expectNetnsCount(PREPARED);
      expect((await wrennHostState(testDataDir)).sandboxDirs).toEqual([]);

      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await agent.client.createSandbox({ timeoutSec: 0 })).sandbox!.id);
      for (const id of ids) expect((await sh(agent.client, id, 'echo ok')).stdout).toBe('ok\n');
      // Three sandboxes, and the slots built ahead again once the creates are over.
      await expectNetnsCount(ids.length + PREPARED);

      // A resume takes one too, and the sandbox's state and network work in it.
      const [first] = ids;
      await sh(agent.client, first!, 'echo kept > /tmp/mark');
      await agent.client.pauseSandbox({ sandboxId: first! });
      await expectNetnsCount(ids.length - 1 + PREPARED);
      const { sandbox } = await agent.client.resumeSandbox({ sandboxId: first! });
      expect(sandbox!.status).toBe(hostagent.SandboxStatus.RUNNING);
      expect((await sh(agent.client, first!, 'cat /tmp/mark')).stdout).toBe('kept\n');
      // Its slot answers on the host at the address it was given.
      const [ip, port] = sandbox!.envdAddress.split(':');
      expect((await fetch(`http://${ip}:${port}/health`)).status).toBeLessThan(500);
      await expectNetnsCount(ids.length + PREPARED);

      await Promise.all(ids.map((sandboxId) => agent.client.destroySandbox({ sandboxId })));
      await expectNetnsCount(PREPARED);
    } finally {
      await agent.stop();
    }
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });

  it('after kill -9 of the agent, the next one removes the slots the first built', async () => {
    const first = await start();
    await expectNetnsCount(PREPARED);
    await first.kill();
    expect((await wrennHostState(testDataDir)).netns).toHaveLength(PREPARED);
    const second = await startAgentProcess({ WRENN_PREPARED_SLOTS: '0' });
    try {
      const state = await wrennHostState(testDataDir);
      expect({ ...state, iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
    } finally {
      await second.stop();
    }
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });
});
