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

  it('a process storm stops at the pids limit, and the sandbox and host carry on', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      const storm =
        "python3 -c \"\nimport subprocess\nps=[]\ntry:\n  for i in range(300): ps.append(subprocess.Popen(['sleep','60']))\nexcept OSError as e: print('stopped at', len(ps), e.errno)\nelse: print('started all', len(ps))\nfor p in ps: p.kill()\n\"";
      const res = await sh(agent.client, id, storm, { timeoutMs: 120_000 });
      expect(res.stdout).toMatch(/^stopped at \d+ \d+/);
      expect(Number(/stopped at (\d+)/.exec(res.stdout)![1])).toBeLessThan(64);
      expect((await sh(agent.client, id, 'echo still here')).stdout).toBe('still here\n');
    });
  });
});
