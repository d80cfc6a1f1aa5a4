import { Sandbox } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { eventually } from './support/host-state.js';

// Warm pools through the control plane (docs/warm-pool.md, "Control plane"): an admin sets a
// pool, the leader pushes it to the agent, and creates through the official e2b SDK are claims.

interface PoolView {
  template: string;
  size: number | null;
  ready: number;
  claims: number;
  misses: number;
  hit_rate: number | null;
}

describe('warm pools set through the API, claimed by the e2b SDK (real gVisor)', () => {
  let agent: AgentProcess;
  let plane: ControlPlane;
  let url: string;
  let admin: string;
  let key: string;

  const pool = async (template: string) => {
    const listed = await apiCall(url, 'GET', '/v1/admin/warm-pools', { bearer: admin });
    expect(listed.status).toBe(200);
    return (listed.body.pools as PoolView[]).find((p) => p.template === template);
  };

  beforeAll(async () => {
    agent = await startAgentProcess();
    plane = await startControlPlane(agent.url);
    url = plane.server.url;
    const login = await apiCall(url, 'POST', '/v1/auth/login', {
      body: { email: 'admin@wrenn.local', password: plane.server.adminPassword },
    });
    admin = login.body.token as string;
    key = await teamApiKey(url, `pool-api-${Date.now()}@example.com`);
    process.env.E2B_API_URL = url;
    process.env.E2B_SANDBOX_URL = url;
  }, 120_000);

  afterAll(async () => {
    await apiCall(url, 'PUT', '/v1/admin/warm-pools/base', { bearer: admin, body: { size: 0 } }).catch(
      () => undefined,
    );
    await plane?.stop();
    await agent?.stop();
  });

  it('an admin sets a pool; SDK creates are served from it (claims, hit rate); size 0 empties it', async () => {
    const set = await apiCall(url, 'PUT', '/v1/admin/warm-pools/base', { bearer: admin, body: { size: 1 } });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body).toMatchObject({ template: 'base', size: 1 });
    const onAgent = (await agent.client.listWarmPools({})).pools.find((p) => p.template === 'base');
    expect(onAgent?.size).toBe(1);
    expect((await apiCall(url, 'PUT', '/v1/admin/warm-pools/base', { key, body: { size: 1 } })).status).toBe(
      401,
    );

    // Ready as the leader reads it (every 10 s).
    await eventually(async () => expect((await pool('base'))?.ready).toBe(1), 90_000);
    const opts = { apiKey: key, timeoutMs: 300_000 };
    const first = await Sandbox.create('base', opts);
    try {
      expect((await first.commands.run('echo pooled')).stdout).toBe('pooled\n');
      await eventually(async () => {
        const p = await pool('base');
        expect(p?.claims).toBe(1);
        expect(p?.hit_rate).toBeGreaterThan(0);
      }, 60_000);
      // Only the claimed sandbox is the team's: the pooled one refilled behind it is nobody's.
      await eventually(async () => expect((await pool('base'))?.ready).toBe(1), 90_000);
      const listed = await apiCall(url, 'GET', '/v1/sandboxes', { key });
      expect((listed.body.sandboxes as { id: string }[]).map((s) => s.id)).toEqual([first.sandboxId]);

      // A second claim is another sandbox, booted on its own.
      const second = await Sandbox.create('base', opts);
      try {
        const bootId = async (s: Sandbox) =>
          (await s.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout;
        expect(await bootId(second)).not.toBe(await bootId(first));
      } finally {
        await second.kill();
      }
    } finally {
      await first.kill();
    }

    const emptied = await apiCall(url, 'PUT', '/v1/admin/warm-pools/base', {
      bearer: admin,
      body: { size: 0 },
    });
    expect(emptied.body).toMatchObject({ size: 0, ready: 0 });
    expect((await agent.client.listWarmPools({})).pools.find((p) => p.template === 'base')?.ready ?? 0).toBe(
      0,
    );
  });
});
