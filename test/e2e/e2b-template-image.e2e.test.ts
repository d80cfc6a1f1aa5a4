import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BuildError, Sandbox, Template } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '@wrenn/server';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import {
  buildBusyboxImage,
  pushImage,
  requireRegistryTools,
  startRegistry,
  type TestImage,
  type TestRegistry,
} from './support/oci-registry.js';

// E2B's `Template().fromImage(image, {username, password})` on Wrenn: the test's own registry on
// loopback, behind htpasswd, holds a busybox-only image the test made; the SDK's build pulls it
// through the agent (the credentials from `fromImageRegistry`), runs a step on it, and a sandbox
// boots from the result. No traffic leaves the machine.
let agent: AgentProcess;
let plane: ControlPlane;
let server: RunningServer;
let guarded: TestRegistry;
let image: TestImage;
let canaryDir: string;
const AUTH = { username: 'puller', password: 'pull-horse-battery' };

beforeAll(async () => {
  await requireRegistryTools();
  canaryDir = await mkdtemp(path.join(tmpdir(), 'e2b-image-canary-'));
  await writeFile(path.join(canaryDir, 'host-file'), 'host content\n');
  [guarded, image] = await Promise.all([
    startRegistry({ user: AUTH.username, password: AUTH.password }),
    buildBusyboxImage(path.join(canaryDir, 'host-file')),
  ]);
  await pushImage(image.layout, `${guarded.host}/private/tiny:1`, {
    user: AUTH.username,
    password: AUTH.password,
  });
  agent = await startAgentProcess({ WRENN_INSECURE_REGISTRIES: guarded.host });
  plane = await startControlPlane(agent.url);
  server = plane.server;
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = await teamApiKey(server.url, `e2b-image-${Date.now()}@example.com`);
}, 180_000);

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
  await Promise.all([guarded?.stop(), image?.cleanup()]);
  if (canaryDir) await rm(canaryDir, { recursive: true, force: true });
});

describe("E2B's Template SDK: fromImage with registry credentials (real gVisor)", () => {
  it('a wrong password fails the build at its base; the right one pulls, runs the steps, and Sandbox.create boots from it', async () => {
    const ref = `${guarded.host}/private/tiny:1`;
    const opts = { cpuCount: 1, memoryMB: 256 };
    const wrong = await Template.build(
      Template().fromImage(ref, { username: AUTH.username, password: 'wrong-password' }).runCmd('true'),
      'e2b-tiny',
      opts,
    ).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(BuildError);
    expect((wrong as Error).message).toMatch(/unauthorized|authentication|denied/i);

    const template = Template()
      .fromImage(ref, AUTH)
      .setUser('root')
      .runCmd('cat /marker > /etc/built && echo "$GREETING" >> /etc/built')
      .setEnvs({ GREETING: 'from-the-sdk' });
    // The ENV comes after the RUN: the RUN sees no GREETING, the sandbox does.
    const built = await Template.build(template, 'e2b-tiny:v1', opts);
    expect(built.tags).toEqual(['default', 'v1']);

    const sbx = await Sandbox.create('e2b-tiny:v1', { timeoutMs: 120_000 });
    try {
      expect(await sbx.files.read('/etc/built')).toBe(`${image.marker}\n\n`);
      // The SDK's commands run in /bin/bash, which a busybox image lacks: Wrenn's exec runs sh.
      const out = await apiCall(server.url, 'POST', `/v1/sandboxes/${sbx.sandboxId}/exec`, {
        key: process.env.E2B_API_KEY,
        body: { cmd: '/bin/sh', args: ['-c', 'echo "$GREETING"; id -u'], user: 'root' },
      });
      expect(out.body.stdout).toBe('from-the-sdk\n0\n');
    } finally {
      await sbx.kill();
    }
  }, 600_000);
});
