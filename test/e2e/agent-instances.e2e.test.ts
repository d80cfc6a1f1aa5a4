import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  installDir,
  sh,
  startAgentProcess,
  testDataDir,
  type AgentProcess,
} from './support/agent-process.js';
import { wrennHostState } from './support/host-state.js';

// Two agents on one host: the default instance and instance `e2eb`, each with its own data dir and
// slot subnet. Each one's start-up janitor must leave the other's sandboxes alone.
const otherDir = path.join(installDir, 'e2e-b');
const otherEnv = { WRENN_DIR: otherDir, WRENN_INSTANCE: 'e2eb', WRENN_SLOT_SUBNET: '10.13.0.0/16' };

async function slotNamespaces(): Promise<string[]> {
  return (await readdir('/var/run/netns').catch(() => [] as string[]))
    .filter((n) => n.startsWith('wrenn-'))
    .sort();
}

async function hostInterfaces(): Promise<string[]> {
  const { stdout } = await exec(['ip', '-o', 'link', 'show']);
  return [...stdout.matchAll(/^\d+: ([^:@\s]+)/gm)]
    .map((m) => m[1]!)
    .filter((n) => n.startsWith('wrn'))
    .sort();
}

describe('two agent instances on one host', () => {
  const agents: AgentProcess[] = [];
  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await rm(otherDir, { recursive: true, force: true });
  });

  it('keep to their own names, and neither janitor touches the other’s sandboxes', async () => {
    let plain = await startAgentProcess();
    agents.push(plain);
    let other = await startAgentProcess(otherEnv);
    agents.push(other);

    const a = (await plain.client.createSandbox({ template: 'base' })).sandbox!.id;
    const b = (await other.client.createSandbox({ template: 'base' })).sandbox!.id;
    expect(await slotNamespaces()).toEqual(['wrenn-1', 'wrenn-e2eb-1']);
    expect(await hostInterfaces()).toEqual(['wrn-h-1', 'wrne2eb-1']);
    const rules = (await exec(['iptables', '-w', '5', '-S'])).stdout;
    expect(rules).toContain('-A WRENN-FORWARD -o wrn-h-+');
    expect(rules).toContain('-A WRENN-E2EB-FORWARD -o wrne2eb-+');
    // Its slots come from its own subnet.
    expect((await other.client.getSandbox({ sandboxId: b })).sandbox?.envdAddress).toMatch(/^10\.13\./);

    // The default agent dies and restarts: its janitor removes its own running sandbox only.
    await plain.kill();
    plain = await startAgentProcess();
    agents.push(plain);
    expect((await plain.client.listSandboxes({})).sandboxes).toEqual([]);
    expect((await sh(other.client, b, 'echo still here')).stdout).toBe('still here\n');
    expect(await slotNamespaces()).toEqual(['wrenn-e2eb-1']);

    // And the other way round.
    const a2 = (await plain.client.createSandbox({ template: 'base' })).sandbox!.id;
    await other.kill();
    other = await startAgentProcess(otherEnv);
    agents.push(other);
    expect((await other.client.listSandboxes({})).sandboxes).toEqual([]);
    expect((await sh(plain.client, a2, 'echo still here')).stdout).toBe('still here\n');
    expect(await slotNamespaces()).toEqual(['wrenn-1']);
    expect(a).not.toBe(a2);

    // Stopping one leaves the other's firewall rules in place.
    await other.stop();
    const after = (await exec(['iptables', '-w', '5', '-S'])).stdout;
    expect(after).not.toContain('WRENN-E2EB');
    expect(after).toContain('-A WRENN-FORWARD -o wrn-h-+');
    expect((await wrennHostState(otherDir)).sandboxDirs).toEqual([]);
    await plain.client.destroySandbox({ sandboxId: a2 });
    await plain.stop();
    expect(await wrennHostState(testDataDir)).toMatchObject({
      netns: [],
      interfaces: [],
      cgroups: [],
      iptablesRules: [],
    });
  });
});
