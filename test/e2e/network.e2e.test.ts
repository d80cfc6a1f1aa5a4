import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from '@wrenn/core';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';

// The slot's own kernel sits between the host and gVisor. Read from its tables, not the agent's.
let agent: AgentProcess;

beforeAll(async () => {
  // With slots built ahead (the default), as `wrenn up` runs.
  agent = await startAgentProcess({ WRENN_PREPARED_SLOTS: '2' });
});

afterAll(async () => {
  await agent?.stop();
});

/** The netns whose transit interface holds `slotIp` (found from the host's view, not the agent's). */
async function netnsOf(slotIp: string): Promise<string> {
  const names = (await exec(['ip', 'netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith('wrenn-'));
  for (const ns of names) {
    const { stdout } = await exec(['ip', '-n', ns, '-o', '-4', 'addr', 'show']);
    if (stdout.includes(` ${slotIp}/`)) return ns;
  }
  throw new Error(`no netns holds ${slotIp}`);
}

interface SlotCounters {
  /** Packets from the host into the slot (veth0 receives). */
  fromHost: number;
  /** Packets the slot's kernel sent towards gVisor (gw0 transmits). */
  toSandbox: number;
  timeExceeded: number;
}

async function slotCounters(ns: string): Promise<SlotCounters> {
  const { stdout } = await exec(['ip', 'netns', 'exec', ns, 'nstat', '-az', 'IcmpOutTimeExcds']);
  const packets = async (dev: string, dir: 'rx' | 'tx') => {
    const link = await exec(['ip', '-n', ns, '-s', '-j', 'link', 'show', dev]);
    const [stats] = JSON.parse(link.stdout) as { stats64: Record<'rx' | 'tx', { packets: number }> }[];
    return stats!.stats64[dir].packets;
  };
  return {
    fromHost: await packets('veth0', 'rx'),
    toSandbox: await packets('gw0', 'tx'),
    timeExceeded: Number(/IcmpOutTimeExcds\s+(\d+)/.exec(stdout)?.[1] ?? NaN),
  };
}

/** `n` requests to envd's /health, each on a new connection (the case that used to stall). */
async function freshConnections(envdAddress: string, n: number): Promise<void> {
  const [host, port] = envdAddress.split(':');
  for (let i = 0; i < n; i++) {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host, port: Number(port), path: '/health', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBeLessThan(300);
  }
}

async function expectEachPacketForwardedOnce(envdAddress: string) {
  const ns = await netnsOf(envdAddress.split(':')[0]!);
  const before = await slotCounters(ns);
  await freshConnections(envdAddress, 30);
  const after = await slotCounters(ns);
  const fromHost = after.fromHost - before.fromHost;
  // A loop through eth0 (the slot's kernel forwarding what gVisor reads off the device back out gw0)
  // hands the sandbox each packet until its TTL runs out, and the host ICMP time-exceeded.
  expect(fromHost).toBeGreaterThanOrEqual(30 * 3);
  expect(after.toSandbox - before.toSandbox).toBeLessThanOrEqual(fromHost + 10);
  expect(after.timeExceeded - before.timeExceeded).toBe(0);
}

describe("the slot's network", () => {
  it('forwards each packet into the sandbox once, after create and after resume', async () => {
    const { client } = agent;
    const { sandbox } = await client.createSandbox({});
    const id = sandbox!.id;
    try {
      await expectEachPacketForwardedOnce(sandbox!.envdAddress);
      await client.pauseSandbox({ sandboxId: id });
      const resumed = await client.resumeSandbox({ sandboxId: id });
      await expectEachPacketForwardedOnce(resumed.sandbox!.envdAddress);
    } finally {
      await client.destroySandbox({ sandboxId: id });
    }
  });
});
