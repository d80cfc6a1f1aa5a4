import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sh,
  startAgentProcess,
  testDataDir,
  withSandbox,
  type AgentProcess,
} from './support/agent-process.js';

// The mounts the agent makes on the host for a sandbox's layer (its disk image, the overlay over its
// template) are nosuid,nodev: what the sandbox writes there is never a working set-uid program or
// device node on the host.

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
});

/** The host's mounts at or below `dir`: mount point → per-mount options (mountinfo's 6th field). */
async function hostMountsBelow(dir: string): Promise<Map<string, string[]>> {
  const mounts = new Map<string, string[]>();
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const fields = line.split(' ');
    const point = fields[4] ?? '';
    if (point === dir || point.startsWith(`${dir}/`)) mounts.set(point, (fields[5] ?? '').split(','));
  }
  return mounts;
}

describe("a sandbox's layer on the host", () => {
  it('is mounted nosuid,nodev, and the sandbox still runs what it writes there', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      const dir = path.join(testDataDir, 'sandboxes', id);
      const mounts = await hostMountsBelow(dir);
      // Positive control: both of the sandbox's mounts are seen.
      expect([...mounts.keys()].sort()).toEqual([`${dir}/disk`, `${dir}/rootfs`]);
      for (const [point, options] of mounts) {
        expect(options, point).toContain('nosuid');
        expect(options, point).toContain('nodev');
      }
      // The sandbox still runs what it writes into its layer, and keeps the files' modes.
      const res = await sh(
        agent.client,
        id,
        "printf '#!/bin/sh\\necho ran\\n' > /home/user/x.sh && chmod 4755 /home/user/x.sh && /home/user/x.sh && stat -c %a /home/user/x.sh",
      );
      expect(res.stdout, res.stderr).toBe('ran\n4755\n');
    });
  });
});
