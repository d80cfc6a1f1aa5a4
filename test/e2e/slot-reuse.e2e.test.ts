import { Sandbox } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';

// A new sandbox usually gets the network slot (and so the address) the last destroyed one had. The
// proxy must never hand the new sandbox a kept-alive connection of the old one: envd's Connect calls
// carry a body, so a reset there reaches the SDK as a 502, which it reads as "sandbox not found".
// Seen as about one failed first command in seven rounds of create → run → kill.

const ROUNDS = 30;

let agent: AgentProcess;
let plane: ControlPlane;

beforeAll(async () => {
  agent = await startAgentProcess();
  plane = await startControlPlane(agent.url);
  const { url } = plane.server;
  process.env.E2B_API_URL = url;
  process.env.E2B_SANDBOX_URL = url;
  process.env.E2B_API_KEY = await teamApiKey(url, `slot-reuse-${Date.now()}@example.com`);
});

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
});

describe('sandboxes on reused network slots, through the e2b SDK', () => {
  it(`runs the first command of every new sandbox (${ROUNDS} rounds of create → run → kill)`, async () => {
    const addresses: string[] = [];
    const failures: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const sbx = await Sandbox.create('base', { timeoutMs: 120_000 });
      try {
        const { sandbox } = await agent.client.getSandbox({ sandboxId: sbx.sandboxId });
        addresses.push(sandbox!.envdAddress);
        const first = await sbx.commands.run('echo hi').catch((err: unknown) => err);
        if (first instanceof Error) failures.push(`round ${round}: ${first.name}: ${first.message}`);
        else expect((first as { stdout: string }).stdout).toBe('hi\n');
        // And a second call with a body, on the connection the first one left in the pool.
        await sbx.files.write('/tmp/round', String(round));
        expect(await sbx.files.read('/tmp/round')).toBe(String(round));
      } finally {
        await sbx.kill();
      }
    }
    expect(failures).toEqual([]);
    // The test means something only if slots were in fact reused.
    expect(new Set(addresses).size).toBeLessThan(ROUNDS / 2);
  }, 600_000);
});
