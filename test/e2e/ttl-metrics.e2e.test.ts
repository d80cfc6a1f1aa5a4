import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { hostagent } from '@wrenn/contracts';
import { eventually } from './support/host-state.js';
import {
  sleep,
  rpcError,
  sh,
  startAgentProcess,
  withSandbox,
  type AgentClient,
  type AgentProcess,
} from './support/agent-process.js';

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
});

const { PAUSED, RUNNING } = hostagent.SandboxStatus;

async function statusOf(client: AgentClient, sandboxId: string) {
  return (await client.getSandbox({ sandboxId })).sandbox!;
}

const expectPausedWithin = (sandboxId: string, timeoutMs: number) =>
  eventually(async () => expect((await statusOf(agent.client, sandboxId)).status).toBe(PAUSED), timeoutMs);

describe('inactivity timeout (TTL)', () => {
  it('pauses an idle sandbox, leaves a pinged one and one with a command in flight running', async () => {
    const ids = await Promise.all(
      [3, 3, 3].map(async (timeoutSec) => (await agent.client.createSandbox({ timeoutSec })).sandbox!.id),
    );
    const [idle, pinged, busy] = ids as [string, string, string];
    try {
      // A command that runs longer than the timeout is activity for as long as it runs.
      const longCommand = sh(agent.client, busy, 'sleep 7; echo done', { timeoutMs: 30_000 });
      const pinging = (async () => {
        for (let i = 0; i < 9; i++) {
          await agent.client.pingSandbox({ sandboxId: pinged });
          await sleep(1000);
        }
      })();
      await expectPausedWithin(idle, 20_000);
      const paused = (await agent.client.listSandboxes({})).sandboxes.find((s) => s.id === idle)!;
      expect(paused.autoPaused).toBe(true);
      expect(paused.statusReason).toMatch(/without activity/);
      expect((await longCommand).stdout).toBe('done\n');
      // 7 s into a 3 s timeout, still running: the command was activity.
      expect((await statusOf(agent.client, busy)).status).toBe(RUNNING);
      await pinging;
      expect((await statusOf(agent.client, pinged)).status).toBe(RUNNING);
      await agent.client.setSandboxTimeout({ sandboxId: pinged, timeoutSec: 0 });

      // The timeout survives pause/resume: resumed without a new one, it pauses again.
      const resumed = await agent.client.resumeSandbox({ sandboxId: idle });
      expect(resumed.sandbox).toMatchObject({ status: RUNNING, timeoutSec: 3, autoPaused: false });
      await expectPausedWithin(idle, 20_000);
      // …and a resume may change it: 0 = never.
      await agent.client.resumeSandbox({ sandboxId: idle, timeoutSec: 0 });
      await sleep(5000);
      expect((await statusOf(agent.client, idle)).status).toBe(RUNNING);
      expect((await statusOf(agent.client, pinged)).status).toBe(RUNNING);
    } finally {
      await Promise.all([idle, pinged, busy].map((sandboxId) => agent.client.destroySandbox({ sandboxId })));
    }
  });

  it('refuses timeouts out of range, naming the field', async () => {
    for (const timeoutSec of [-1, 31 * 24 * 3600]) {
      const err = await rpcError(agent.client.createSandbox({ timeoutSec }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^timeout_sec: /);
    }
    expect((await agent.client.listSandboxes({})).sandboxes).toEqual([]);
  });
});

describe('metrics', () => {
  it('show a CPU burner near its vCPU limit, memory and disk in use, in all three ranges', async () => {
    await withSandbox(agent.client, { vcpus: 1, memoryMb: 512 }, async (id) => {
      // Two busy processes: a 1-vCPU sandbox should show ~100 % of its one vCPU, not 200 %.
      await sh(
        agent.client,
        id,
        'head -c 64M /dev/urandom > /home/user/blob; for i in 1 2; do nohup timeout 20 sh -c "while :; do :; done" >/dev/null 2>&1 & done',
        { timeoutMs: 60_000 },
      );
      await sleep(3000);
      const { samples } = await agent.client.getSandboxMetrics({
        sandboxId: id,
        range: hostagent.MetricsRange.METRICS_RANGE_10M,
      });
      expect(samples.length).toBeGreaterThan(4);
      const recent = samples.slice(-4);
      const meanCpu = recent.reduce((sum, s) => sum + s.cpuUsedPct, 0) / recent.length;
      expect(meanCpu).toBeGreaterThan(70);
      expect(meanCpu).toBeLessThanOrEqual(100);
      const last = samples.at(-1)!;
      expect(last.cpuCount).toBe(1);
      expect(last.memTotalBytes).toBe(512n * 1024n * 1024n);
      expect(last.memUsedBytes).toBeGreaterThan(10n * 1024n * 1024n);
      expect(last.diskUsedBytes).toBeGreaterThan(64n * 1024n * 1024n);
      expect(last.diskTotalBytes).toBeGreaterThan(last.diskUsedBytes);
      // Samples are 500 ms apart.
      const gaps = samples
        .slice(1)
        .map(
          (s, i) =>
            Number(s.time!.seconds - samples[i]!.time!.seconds) * 1000 +
            (s.time!.nanos - samples[i]!.time!.nanos) / 1e6,
        );
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(400);

      for (const range of [
        hostagent.MetricsRange.METRICS_RANGE_2H,
        hostagent.MetricsRange.METRICS_RANGE_24H,
      ]) {
        const avg = await agent.client.getSandboxMetrics({ sandboxId: id, range });
        expect(avg.samples.length).toBeGreaterThanOrEqual(1);
        expect(avg.samples.at(-1)!.cpuUsedPct).toBeGreaterThan(10);
      }

      // Paused, the agent still has its history; flush hands over every tier.
      await agent.client.pauseSandbox({ sandboxId: id });
      const flushed = await agent.client.flushSandboxMetrics({ sandboxId: id });
      expect(flushed.raw10m.length).toBeGreaterThanOrEqual(samples.length);
      expect(flushed.avg30s2h.length).toBeGreaterThanOrEqual(1);
      expect(flushed.avg5m24h.length).toBeGreaterThanOrEqual(1);

      const bad = await rpcError(
        agent.client.getSandboxMetrics({ sandboxId: id, range: 42 as hostagent.MetricsRange }),
      );
      expect(bad.code).toBe(Code.InvalidArgument);
      expect(bad.rawMessage).toMatch(/^range: /);
    });
  });
});
