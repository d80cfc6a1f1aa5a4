import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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

// Builds from an OCI image: the test's own registries on loopback (one open, one behind htpasswd)
// hold a busybox-only image the test made; a build pulls it through the agent, runs steps on it and
// makes a template whose sandboxes boot from it. No traffic leaves the machine.
let agent: AgentProcess;
let plane: ControlPlane;
let server: RunningServer;
let key: string;
let open: TestRegistry;
let guarded: TestRegistry;
let image: TestImage;
let canaryDir: string;
const AUTH = { user: 'puller', password: 'pull-horse-battery' };

const call = (method: string, url: string, body?: unknown) => apiCall(server.url, method, url, { key, body });

type Build = { id: string; status: string; reason: { step: string; message: string } | null };

async function finished(id: string): Promise<Build> {
  for (;;) {
    const got = (await call('GET', `/v1/builds/${id}`)).body as unknown as Build;
    if (['ready', 'error', 'cancelled'].includes(got.status)) return got;
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function logsOf(id: string): Promise<string[]> {
  const res = await call('GET', `/v1/builds/${id}/logs`);
  return (res.body.logs as { message: string }[]).map((l) => l.message);
}

beforeAll(async () => {
  await requireRegistryTools();
  canaryDir = await mkdtemp(path.join(tmpdir(), 'wrenn-canary-'));
  await writeFile(path.join(canaryDir, 'host-file'), 'host content\n');
  [open, guarded, image] = await Promise.all([
    startRegistry(),
    startRegistry(AUTH),
    buildBusyboxImage(path.join(canaryDir, 'host-file')),
  ]);
  await pushImage(image.layout, `${open.host}/tests/tiny:1`);
  await pushImage(image.layout, `${guarded.host}/private/tiny:1`, AUTH);
  agent = await startAgentProcess({ WRENN_INSECURE_REGISTRIES: [open.host, guarded.host].join(',') });
  plane = await startControlPlane(agent.url);
  server = plane.server;
  key = await teamApiKey(server.url, 'images@example.com');
}, 180_000);

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
  await Promise.all([open?.stop(), guarded?.stop(), image?.cleanup()]);
  if (canaryDir) await rm(canaryDir, { recursive: true, force: true });
});

describe('template builds from a registry image (real gVisor)', () => {
  it('pulls the image, runs steps on it (its Env and WorkingDir apply), and sandboxes boot from the result', async () => {
    const res = await call('POST', '/v1/builds', {
      template: 'tiny',
      from_image: `${open.host}/tests/tiny:1`,
      recipe: [
        'RUN echo "$WRENN_TEST_ENV in $(pwd)" > /tmp/step-out',
        'USER root',
        'RUN cp /tmp/step-out /etc/built',
      ],
      memory_mb: 256,
      disk_mb: 512,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const build = await finished(res.body.id as string);
    expect(build.status, JSON.stringify({ build, logs: await logsOf(build.id) })).toBe('ready');
    expect(
      (await logsOf(build.id)).some((l) => l.startsWith(`pulled ${open.host}/tests/tiny:1 (sha256:`)),
    ).toBe(true);

    const created = await call('POST', '/v1/sandboxes', { template: 'tiny' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id as string;
    try {
      const out = await call('POST', `/v1/sandboxes/${id}/exec`, {
        cmd: '/bin/sh',
        args: ['-c', 'cat /marker /etc/built; id -u'],
        user: 'root',
      });
      expect(out.body.stdout).toBe(`${image.marker}\nfrom-image in /work\n0\n`);
    } finally {
      await call('DELETE', `/v1/sandboxes/${id}`);
    }

    // Another build of the same image reuses what was pulled (no second pull).
    const again = await call('POST', '/v1/builds', {
      template: 'tiny2',
      from_image: `${open.host}/tests/tiny:1`,
      recipe: ['RUN true'],
      kind: 'image',
      memory_mb: 256,
      disk_mb: 512,
    });
    const second = await finished(again.body.id as string);
    expect(second.status).toBe('ready');
    expect(await logsOf(second.id)).toContain(`image ${open.host}/tests/tiny:1: pulled before, reused`);
  });

  it('a registry behind a password: refused without the right one (the build fails at its base), pulled with it', async () => {
    const start = (password?: string) =>
      call('POST', '/v1/builds', {
        template: 'private',
        from_image: `${guarded.host}/private/tiny:1`,
        ...(password ? { registry_credentials: { username: AUTH.user, password } } : {}),
        recipe: ['RUN cat /marker'],
        kind: 'image',
        memory_mb: 256,
        disk_mb: 512,
      });
    for (const password of [undefined, 'wrong-password']) {
      const failed = await finished((await start(password)).body.id as string);
      expect(failed.status).toBe('error');
      expect(failed.reason?.step).toBe('base');
      expect(failed.reason?.message).toMatch(/unauthorized|authentication|denied/i);
    }
    const ok = await finished((await start(AUTH.password)).body.id as string);
    expect(ok.status, JSON.stringify(ok)).toBe('ready');
    expect(await logsOf(ok.id)).toContain(image.marker);
    // The credentials were kept only while the build ran.
    const row = await call('GET', `/v1/builds/${ok.id}`);
    expect(JSON.stringify(row.body)).not.toContain(AUTH.password);
  });
});
