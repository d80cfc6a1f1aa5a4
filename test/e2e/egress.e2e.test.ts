import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  sh,
  startAgentProcess,
  testDataDir,
  withSandbox,
  type AgentProcess,
} from './support/agent-process.js';
import { connect } from 'node:net';
import {
  HOSTS,
  PORT,
  PRIVATE_HOST,
  PROBE,
  startEgressHosts,
  startTestDns,
  type EgressHosts,
} from './support/egress-hosts.js';
import { wrennHostState } from './support/host-state.js';

// Per-sandbox egress policy on the agent (docs/network.md), against test hosts in a namespace of
// this machine (support/egress-hosts.ts) and a DNS server of the test's own on loopback.
type Egress = MessageInitShape<typeof hostagent.EgressPolicySchema>;
const [A, B, C] = HOSTS;
const DNS_PORT = 49953;

let agent: AgentProcess;
let hosts: EgressHosts;
let dns: Awaited<ReturnType<typeof startTestDns>>;

beforeAll(async () => {
  hosts = await startEgressHosts();
  dns = await startTestDns({ 'ok.test': A, 'api.svc.test': B, 'other.test': C });
  agent = await startAgentProcess({ WRENN_EGRESS_RESOLVER: dns.address });
});

afterAll(async () => {
  await agent?.stop();
  await dns?.stop();
  await hosts?.stop();
});

async function probe(id: string, ...args: string[]): Promise<string> {
  const { stdout, stderr } = await sh(
    agent.client,
    id,
    `test -f /tmp/probe.py || cat > /tmp/probe.py <<'EOF'\n${PROBE}\nEOF\npython3 /tmp/probe.py ${args.join(' ')}`,
  );
  if (!stdout) throw new Error(`probe ${args.join(' ')} printed nothing: ${stderr}`);
  return stdout.trim();
}
const reach = (id: string, ip: string) => probe(id, 'tcp', ip);
const opened = (ip: string) => `open hello from ${ip}`;

async function expectReach(id: string, expected: Record<string, boolean>): Promise<void> {
  const seen: Record<string, boolean> = {};
  for (const ip of Object.keys(expected)) {
    const out = await reach(id, ip);
    if (out !== opened(ip)) expect(out).toMatch(/^blocked /);
    seen[ip] = out === opened(ip);
  }
  expect(seen).toEqual(expected);
}

async function withPolicy<T>(egress: Egress | undefined, fn: (id: string) => Promise<T>): Promise<T> {
  return withSandbox(agent.client, { egress }, fn);
}

describe('egress policy', () => {
  it('no policy: every test host answers (the positive control)', async () => {
    await withPolicy(undefined, (id) => expectReach(id, { [A]: true, [B]: true, [C]: true }));
  });

  it('internet off (deny all) blocks every host', async () => {
    await withPolicy({ denyCidrs: ['0.0.0.0/0'] }, (id) => expectReach(id, { [A]: false, [B]: false }));
  });

  it('a denied CIDR is blocked and other hosts stay reachable', async () => {
    await withPolicy({ denyCidrs: [`${B}/32`] }, (id) =>
      expectReach(id, { [A]: true, [B]: false, [C]: true }),
    );
  });

  it('an allow list with deny all lets through only what it lists', async () => {
    await withPolicy({ allowCidrs: [`${A}/32`], denyCidrs: ['0.0.0.0/0'] }, (id) =>
      expectReach(id, { [A]: true, [B]: false, [C]: false }),
    );
  });

  it('allowed names: only the answered addresses open; other names refused; forged answers open nothing', async () => {
    await withPolicy({ allowDomains: ['ok.test', '*.svc.test'], denyCidrs: ['0.0.0.0/0'] }, async (id) => {
      // Nothing is open before a name is asked.
      await expectReach(id, { [A]: false, [B]: false });
      // The sandbox's DNS goes to the agent whatever server it names (here a test host, which runs none).
      expect(await probe(id, 'dns', 'ok.test', C)).toBe(`rcode 0 ${A}`);
      expect(await probe(id, 'dns', 'api.svc.test', C)).toBe(`rcode 0 ${B}`);
      // A name not allowed is refused (5), and never asked upstream.
      expect(await probe(id, 'dns', 'other.test', C)).toBe('rcode 5');
      expect(await probe(id, 'dns', 'svc.test', C)).toBe('rcode 5');
      expect(dns.asked).not.toContain('other.test');
      // A forged response "other.test is at C" opens nothing.
      await probe(id, 'forge', C, 'ok.test', C);
      await expectReach(id, { [A]: true, [B]: true, [C]: false });
    });
  });

  it('changes at runtime both ways, and survives pause and resume', async () => {
    await withPolicy(undefined, async (id) => {
      await expectReach(id, { [A]: true, [B]: true });
      await agent.client.updateNetwork({
        sandboxId: id,
        egress: { allowCidrs: [`${B}/32`], denyCidrs: ['0.0.0.0/0'] },
      });
      await expectReach(id, { [A]: false, [B]: true });
      await agent.client.pauseSandbox({ sandboxId: id });
      // Changed while paused, too: the resume applies the newest.
      await agent.client.updateNetwork({
        sandboxId: id,
        egress: { allowCidrs: [`${A}/32`], denyCidrs: ['0.0.0.0/0'] },
      });
      await agent.client.resumeSandbox({ sandboxId: id });
      await expectReach(id, { [A]: true, [B]: false });
      await agent.client.updateNetwork({ sandboxId: id });
      await expectReach(id, { [A]: true, [B]: true });
    });
  });

  it('the policy named on resume replaces the recorded one (a sandbox moved by the control plane)', async () => {
    await withPolicy({ denyCidrs: ['0.0.0.0/0'] }, async (id) => {
      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.resumeSandbox({ sandboxId: id, egress: { denyCidrs: [`${C}/32`] } });
      await expectReach(id, { [A]: true, [C]: false });
    });
  });

  it("the platform's deny list applies whatever the policy allows", async () => {
    // The private host answers the host itself (so "blocked" below is the platform's doing).
    const line = await new Promise<string>((resolve, reject) => {
      const socket = connect(PORT, PRIVATE_HOST);
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => resolve(d.trim())).on('error', reject);
    });
    expect(line).toBe(`hello from ${PRIVATE_HOST}`);
    await withPolicy({ allowCidrs: ['10.0.0.0/8', '0.0.0.0/0'], denyCidrs: ['0.0.0.0/0'] }, async (id) => {
      // The slot's host end (the host itself, where the agent's DNS listens) on its agent port.
      const slotIp = (await agent.client.getSandbox({ sandboxId: id })).sandbox!.envdAddress.split(':')[0]!;
      const hostIp = slotIp.replace(/\d+$/, (n) => String(Number(n) - 1));
      await expectReach(id, { [PRIVATE_HOST]: false, [hostIp]: false, [A]: true });
    });
  });

  it('an agent killed and started again adopts the sandbox with its policy and its DNS', async () => {
    const { sandbox } = await agent.client.createSandbox({
      egress: { allowDomains: ['ok.test'], denyCidrs: ['0.0.0.0/0'] },
    });
    const id = sandbox!.id;
    try {
      expect(await probe(id, 'dns', 'ok.test', C)).toBe(`rcode 0 ${A}`);
      await agent.kill();
      agent = await startAgentProcess({ WRENN_EGRESS_RESOLVER: dns.address }, { keepPaused: true });
      // The policy is in force again, the addresses opened before the restart closed (the new agent
      // never saw them answered); the new agent answers the slot's DNS and opens them again.
      await expectReach(id, { [A]: false, [B]: false });
      expect(await probe(id, 'dns', 'api.svc.test', C)).toBe('rcode 5');
      expect(await probe(id, 'dns', 'ok.test', C)).toBe(`rcode 0 ${A}`);
      await expectReach(id, { [A]: true, [B]: false });
    } finally {
      await agent.client.destroySandbox({ sandboxId: id });
    }
  });

  it('invalid policies are refused naming the entry', async () => {
    await expect(
      agent.client.createSandbox({ egress: { denyCidrs: ['10.0.0.0/8', 'nope'] } }),
    ).rejects.toThrow(/egress\.deny_cidrs\[1\]/);
  });

  it('nothing outlives the sandbox: no netns, rule or DNS socket', async () => {
    const listening = async () =>
      (await exec(['ss', '-uln'])).stdout.split('\n').filter((l) => l.includes(`:${DNS_PORT} `));
    await withPolicy({ allowDomains: ['ok.test'], denyCidrs: ['0.0.0.0/0'] }, async (id) => {
      expect(await listening()).toHaveLength(1);
      expect(await probe(id, 'dns', 'ok.test', C)).toBe(`rcode 0 ${A}`);
    });
    expect(await listening()).toEqual([]);
    const state = await wrennHostState(testDataDir);
    expect(state.netns).toEqual([]);
  });
});
