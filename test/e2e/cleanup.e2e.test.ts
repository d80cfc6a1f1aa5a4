import { describe, expect, it } from 'vitest';
import { startAgentProcess, sh, testDataDir } from './support/agent-process.js';
import { EMPTY_HOST_STATE, wrennHostState } from './support/host-state.js';

// The agent's own firewall rules exist while it runs; nothing else of Wrenn should.
async function expectOnlyAgentRules() {
  const state = await wrennHostState(testDataDir);
  expect({ ...state, iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
  expect(state.iptablesRules.length).toBeGreaterThan(0);
}

describe('nothing of Wrenn outlives the sandbox it belongs to', () => {
  it('destroying every sandbox leaves no netns, veth, mount, runsc process, rule, dir or cgroup', async () => {
    const agent = await startAgentProcess();
    try {
      await expectOnlyAgentRules();
      const created = await Promise.all([1, 2, 3].map(() => agent.client.createSandbox({})));
      const ids = created.map((c) => c.sandbox!.id);
      const during = await wrennHostState(testDataDir);
      // The listing really sees sandboxes' resources (so "empty" below means something).
      expect(during.netns.length).toBe(3);
      expect(during.interfaces.length).toBe(3);
      // Each slot's connected route, and the one to its sandbox with a low retransmit floor.
      expect(during.routes.filter((r) => /rto_min lock 20ms/.test(r)).length).toBe(3);
      expect(during.mounts.length).toBeGreaterThanOrEqual(6);
      expect(during.runscProcesses.length).toBeGreaterThanOrEqual(3);
      expect(during.sandboxDirs.sort()).toEqual([...ids].sort());
      for (const id of ids) expect((await sh(agent.client, id, 'echo ok')).stdout).toBe('ok\n');
      await Promise.all(ids.map((sandboxId) => agent.client.destroySandbox({ sandboxId })));
      await expectOnlyAgentRules();
    } finally {
      await agent.stop();
    }
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });

  it('after kill -9 of the agent in the middle of creates, a restart cleans up everything', async () => {
    const first = await startAgentProcess();
    const creates = [1, 2, 3, 4].map(() => first.client.createSandbox({}).catch(() => undefined));
    // Kill as soon as the first sandbox's resources appear: creates are in flight.
    const deadline = Date.now() + 60_000;
    let state = await wrennHostState(testDataDir);
    while (state.netns.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      state = await wrennHostState(testDataDir);
    }
    await first.kill();
    await Promise.all(creates);
    const leftover = await wrennHostState(testDataDir);
    expect(leftover.netns.length + leftover.sandboxDirs.length).toBeGreaterThan(0);

    const second = await startAgentProcess();
    try {
      await expectOnlyAgentRules();
      // And the restarted agent works.
      const { sandbox } = await second.client.createSandbox({});
      expect((await sh(second.client, sandbox!.id, 'echo fresh')).stdout).toBe('fresh\n');
      await second.client.destroySandbox({ sandboxId: sandbox!.id });
    } finally {
      await second.stop();
    }
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });
});
