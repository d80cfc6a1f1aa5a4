import { open, readdir, rm, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from '@wrenn/core';
import { installDir, startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

// Two faults of a checkpoint, through the public API on a real agent: the disk fills up during a
// pause, and a paused sandbox's checkpoint is damaged on disk. The agent's data dir is a small
// loop-mounted ext4 the test makes, so "disk full" is the real ENOSPC of the real filesystem.
const dataDir = path.join(installDir, 'e2e-checkpoint-faults');
const imageFile = `${dataDir}.img`;
let agent: AgentProcess;
let cp: ControlPlane;
let key: string;

beforeAll(async () => {
  await exec(['umount', dataDir]).catch(() => undefined);
  await rm(dataDir, { recursive: true, force: true });
  await rm(imageFile, { force: true });
  await exec(['truncate', '-s', '2G', imageFile]);
  await exec(['mkfs.ext4', '-q', '-F', '-m', '0', imageFile]);
  await exec(['mkdir', '-p', dataDir]);
  await exec(['mount', '-o', 'loop', imageFile, dataDir]);
  agent = await startAgentProcess({ WRENN_DIR: dataDir });
  cp = await startControlPlane(agent.url);
  key = await teamApiKey(cp.server.url, 'checkpoint-faults@example.com');
}, 180_000);

afterAll(async () => {
  await cp?.stop();
  await agent?.stop();
  await exec(['umount', dataDir]).catch(() => undefined);
  await rm(dataDir, { recursive: true, force: true });
  await rm(imageFile, { force: true });
});

const call = (method: string, url: string, body?: unknown) =>
  apiCall(cp.server.url, method, url, { key, body });

/** A running sandbox with a background process; its pid. */
async function sandboxWithSleeper(): Promise<{ id: string; pid: string }> {
  const created = await call('POST', '/v1/sandboxes', { timeout_sec: 0 });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const id = created.body.id as string;
  const out = await call('POST', `/v1/sandboxes/${id}/exec`, {
    cmd: 'echo kept > /tmp/mark; nohup sleep 100000 >/dev/null 2>&1 & echo $!',
  });
  const pid = (out.body.stdout as string).trim();
  expect(pid).toMatch(/^\d+$/);
  return { id, pid };
}

async function expectAlive(id: string, pid: string): Promise<void> {
  const out = await call('POST', `/v1/sandboxes/${id}/exec`, {
    cmd: `cat /tmp/mark; kill -0 ${pid} && echo alive`,
  });
  expect(out.status, JSON.stringify(out.body)).toBe(200);
  expect(out.body.stdout).toBe('kept\nalive\n');
}

/** Nothing of the sandbox's runtime is on the host: no netns, link, mount, runsc process or cgroup. */
async function expectNoRuntime(): Promise<void> {
  await eventually(async () => {
    const state = await wrennHostState(dataDir);
    expect({ ...state, sandboxDirs: [], iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
  }, 15_000);
}

describe('checkpoint faults (real gVisor, through the API)', () => {
  it('disk full during a pause: the sandbox keeps running and the error says the disk is full', async () => {
    const { id, pid } = await sandboxWithSleeper();
    const filler = path.join(dataDir, 'filler');
    try {
      // Leave 1 MiB: far less than a checkpoint of the sandbox's memory.
      const { stdout } = await exec(['df', '--output=avail', '-B1', dataDir]);
      const avail = Number(stdout.trim().split('\n').pop());
      await exec(['fallocate', '-l', String(avail - (1 << 20)), filler]);
      for (let attempt = 0; attempt < 2; attempt++) {
        const paused = await call('POST', `/v1/sandboxes/${id}/pause`);
        expect(paused.status, JSON.stringify(paused.body)).toBeGreaterThanOrEqual(400);
        expect(paused.body.code).toBe('resource_exhausted');
        expect(paused.body.message).toMatch(/disk is full.*it keeps running/i);
        expect((await call('GET', `/v1/sandboxes/${id}`)).body.status).toBe('running');
        await expectAlive(id, pid);
        const dir = await readdir(path.join(dataDir, 'sandboxes', id));
        expect(dir).not.toContain('checkpoint.partial');
        expect(dir).not.toContain('checkpoint');
      }
    } finally {
      await rm(filler, { force: true });
    }
    // With room again, the same sandbox pauses and resumes with its processes.
    const paused = await call('POST', `/v1/sandboxes/${id}/pause`);
    expect(paused.status, JSON.stringify(paused.body)).toBe(200);
    const resumed = await call('POST', `/v1/sandboxes/${id}/resume`);
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
    await expectAlive(id, pid);
    expect((await call('DELETE', `/v1/sandboxes/${id}`)).status).toBe(204);
    await expectNoRuntime();
  });

  for (const damage of ['truncated', 'bytes flipped'] as const) {
    it(`a checkpoint with its state file ${damage}: resume fails saying so, twice, and the sandbox stays paused`, async () => {
      const { id } = await sandboxWithSleeper();
      const paused = await call('POST', `/v1/sandboxes/${id}/pause`);
      expect(paused.status, JSON.stringify(paused.body)).toBe(200);
      const checkpoint = path.join(dataDir, 'sandboxes', id, 'checkpoint');
      // The agent records what the image held (sizes, hashes) right after the pause answered.
      await eventually(async () => void (await stat(`${checkpoint}.manifest.json`)), 30_000);
      const stateFile = path.join(checkpoint, 'checkpoint.img');
      const size = (await stat(stateFile)).size;
      if (damage === 'truncated') await truncate(stateFile, Math.floor(size / 2));
      else {
        const fd = await open(stateFile, 'r+');
        try {
          for (const at of [size / 3, size / 2, (2 * size) / 3])
            await fd.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, Math.floor(at));
        } finally {
          await fd.close();
        }
      }
      await expectNoRuntime();
      for (let attempt = 0; attempt < 2; attempt++) {
        const resumed = await call('POST', `/v1/sandboxes/${id}/resume`);
        expect(resumed.status, JSON.stringify(resumed.body)).toBeGreaterThanOrEqual(400);
        expect(resumed.body.code).toBe('failed_precondition');
        expect(resumed.body.message).toMatch(
          /its checkpoint is damaged \(checkpoint\.img: .*\); the sandbox stays paused/,
        );
        expect((await call('GET', `/v1/sandboxes/${id}`)).body.status).toBe('paused');
        await expectNoRuntime();
        expect(await readdir(checkpoint)).toContain('checkpoint.img');
      }
      expect((await call('DELETE', `/v1/sandboxes/${id}`)).status).toBe(204);
      await expectNoRuntime();
      await eventually(async () => expect((await wrennHostState(dataDir)).sandboxDirs).toEqual([]), 15_000);
    });
  }
});
