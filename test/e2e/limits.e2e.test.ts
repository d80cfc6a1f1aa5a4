import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh, startAgentProcess, withSandbox, type AgentProcess } from './support/agent-process.js';

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess({ WRENN_SANDBOX_PIDS_LIMIT: '64' });
});

afterAll(async () => {
  await agent?.stop();
});

const cpuUsageNs = async (id: string) =>
  Number(await readFile(`/sys/fs/cgroup/cpuacct/wrenn/${id}/cpuacct.usage`, 'utf8'));
const cpuQuotaUs = async (id: string) =>
  Number(await readFile(`/sys/fs/cgroup/cpu/wrenn/${id}/cpu.cfs_quota_us`, 'utf8'));

describe('resource limits hold inside real sandboxes', () => {
  it('a 1-vCPU sandbox gets about one core, however many threads burn', async () => {
    await withSandbox(agent.client, { vcpus: 1 }, async (id) => {
      const before = await cpuUsageNs(id);
      const started = process.hrtime.bigint();
      const burn =
        "python3 -c 'import multiprocessing as m, time\ndef f():\n  t=time.time()\n  while time.time()-t<3: pass\nps=[m.Process(target=f) for _ in range(2)]\n[p.start() for p in ps]; [p.join() for p in ps]'";
      expect((await sh(agent.client, id, burn, { timeoutMs: 60_000 })).exitCode).toBe(0);
      const cores = (await cpuUsageNs(id)) - before;
      const wallNs = Number(process.hrtime.bigint() - started);
      // Two busy processes on a 2-core host would use ~2 cores without the quota.
      expect(cores / wallNs).toBeGreaterThan(0.5);
      expect(cores / wallNs).toBeLessThan(1.3);
    });
  });

  it('a start runs on every core; the sandbox is held to its vCPUs once it answers, after a resume too', async () => {
    await withSandbox(agent.client, { vcpus: 2 }, async (id) => {
      expect(await cpuQuotaUs(id)).toBe(200_000);
      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.resumeSandbox({ sandboxId: id });
      // The restore made a new cgroup without a quota; the resume set it.
      expect(await cpuQuotaUs(id)).toBe(200_000);
      expect((await sh(agent.client, id, 'echo ok')).stdout).toBe('ok\n');
    });
  });

  it('a process storm stops at the pids limit with EAGAIN, and the sandbox and host carry on', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      // The guest limit is gVisor's own pids cgroup; the host's, below the runtime, is much higher.
      expect((await sh(agent.client, id, 'cat /sys/fs/cgroup/pids/pids.max')).stdout).toBe('64\n');
      const hostMax = await readFile(`/sys/fs/cgroup/pids/wrenn/${id}/pids.max`, 'utf8');
      expect(Number(hostMax)).toBeGreaterThan(64 * 4);
      const storm =
        "python3 -c \"\nimport subprocess\nps=[]\ntry:\n  for i in range(300): ps.append(subprocess.Popen(['sleep','60']))\nexcept OSError as e: print('stopped at', len(ps), e.errno)\nelse: print('started all', len(ps))\nfor p in ps: p.kill()\nfor p in ps: p.wait()\n\"";
      for (let round = 0; round < 3; round++) {
        const res = await sh(agent.client, id, storm, { timeoutMs: 120_000 });
        // 11 = EAGAIN, what Linux answers at a pids limit. gVisor counts loosely (the cut came at
        // 60–190 of 300 with a limit of 64), but it always cuts.
        expect(res.stdout).toMatch(/^stopped at \d+ 11\n/);
        expect((await sh(agent.client, id, 'echo still here')).stdout).toBe('still here\n');
      }
      // The runtime's own tasks stayed clear of the host limit (reaching it kills the sandbox).
      const host = Number(await readFile(`/sys/fs/cgroup/pids/wrenn/${id}/pids.current`, 'utf8'));
      expect(host).toBeLessThan(Number(hostMax));
    });
  });
});
