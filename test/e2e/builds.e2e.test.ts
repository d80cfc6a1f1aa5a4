import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import http from 'node:http';
import { mkdtemp, mkdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '@wrenn/server';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { eventually, wrennHostState } from './support/host-state.js';
import { testDataDir } from './support/agent-process.js';

// Template builds through `/v1` on a real agent: recipes run in gVisor sandboxes, snapshots and
// images come out, the cache, failures, cancel and the worker limit.
let agent: AgentProcess;
let plane: ControlPlane;
let server: RunningServer;
let key: string;
let contextHash: string;

// RUN steps run as the template's user (`user` in base) until a USER step, as E2B's do.
const RECIPE = [
  'RUN echo built-as-$(id -un) > /home/user/who',
  'USER root',
  'RUN apt-get --version >/dev/null && echo root-ok > /etc/root-ok && id -un > /root/who',
  'COPY --chmod=0755 app /opt/app',
  'COPY --chown=user notes.txt /home/user/',
  'ENV GREETING=hi WHO=builder',
  'WORKDIR /srv/site',
  'RUN echo "$GREETING $WHO" > index.html && pwd > /tmp/pwd',
  'USER user',
];

/** The build of the first test, rebuilt unchanged later (the start command serves /srv/site). */
const webapp = () => ({
  template: 'webapp',
  recipe: RECIPE,
  context_hash: contextHash,
  start_cmd: 'cd /srv/site && python3 -m http.server 8000',
  ready_cmd: 'python3 -c "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8000/\')"',
  memory_mb: 512,
  disk_mb: 1024,
});

const call = (method: string, url: string, body?: unknown) => apiCall(server.url, method, url, { key, body });

type Build = {
  id: string;
  status: string;
  progress: { steps: number; done: number; cached: number };
  reason: { step: string; message: string; log_tail: string[] } | null;
};

async function waitForBuild(
  id: string,
  until: (b: Build) => boolean = (b) => ['ready', 'error', 'cancelled'].includes(b.status),
) {
  for (;;) {
    const res = await call('GET', `/v1/builds/${id}`);
    expect(res.status).toBe(200);
    const build = res.body as unknown as Build;
    if (until(build)) return build;
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function exec(sandboxId: string, cmd: string, user?: string) {
  const res = await call('POST', `/v1/sandboxes/${sandboxId}/exec`, {
    cmd: '/bin/sh',
    args: ['-c', cmd],
    user,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as { exit_code: number; stdout: string; stderr: string };
}

/** PUT a file as a stream on a connection of its own; the answer even when it comes early. */
function uploadFile(url: string, file: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'PUT',
        agent: false,
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    createReadStream(file).pipe(req);
  });
}

async function withTemplateSandbox<T>(template: string, fn: (id: string) => Promise<T>): Promise<T> {
  const created = await call('POST', '/v1/sandboxes', { template });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const id = created.body.id as string;
  try {
    return await fn(id);
  } finally {
    await call('DELETE', `/v1/sandboxes/${id}`);
  }
}

beforeAll(async () => {
  agent = await startAgentProcess();
  plane = await startControlPlane(agent.url);
  server = plane.server;
  key = await teamApiKey(server.url, 'builder@example.com');
  // The context COPY takes from: a directory with an executable script and a plain file.
  const dir = await mkdtemp(path.join(tmpdir(), 'wrenn-build-ctx-'));
  await mkdir(path.join(dir, 'app'));
  await writeFile(path.join(dir, 'app', 'hello.sh'), '#!/bin/sh\necho hello from the template\n');
  await chmod(path.join(dir, 'app', 'hello.sh'), 0o644);
  await writeFile(path.join(dir, 'notes.txt'), 'copied notes\n');
  const tar = path.join(dir, 'context.tar.gz');
  execFileSync('tar', ['-czf', tar, '-C', dir, 'app', 'notes.txt']);
  const bytes = await readFile(tar);
  contextHash = createHash('sha256').update(bytes).digest('hex');
  const up = await fetch(`${server.url}/v1/builds/files/${contextHash}`, {
    method: 'PUT',
    headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  expect(up.status, await up.clone().text()).toBe(200);
  const wrong = await fetch(`${server.url}/v1/builds/files/${'0'.repeat(64)}`, {
    method: 'PUT',
    headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  expect(wrong.status).toBe(400);
  await rm(dir, { recursive: true, force: true });
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
});

describe('template builds through /v1 (real gVisor)', () => {
  it('a recipe with every step type and a start command becomes a template whose sandboxes have it all', async () => {
    const res = await call('POST', '/v1/builds', {
      ...webapp(),
      tags: ['v1'],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const build = await waitForBuild(res.body.id as string);
    const logs = await call('GET', `/v1/builds/${build.id}/logs`);
    expect(build.status, JSON.stringify({ build, logs: logs.body })).toBe('ready');
    expect(build.progress).toMatchObject({ steps: 9, done: 9, cached: 0 });
    const lines = (logs.body.logs as { message: string; step: string | null; level: string }[]).map(
      (l) => l.message,
    );
    expect(lines.some((l) => l.includes('[4/9] COPY app /opt/app'))).toBe(true);

    for (const ref of ['webapp', 'webapp:v1']) {
      await withTemplateSandbox(ref, async (id) => {
        const out = await exec(
          id,
          'cat /home/user/who /etc/root-ok /root/who /tmp/pwd /srv/site/index.html; /opt/app/hello.sh; stat -c %a /opt/app/hello.sh; stat -c %U /home/user/notes.txt; cat /home/user/notes.txt',
          'root',
        );
        expect(out.stdout.split('\n')).toEqual([
          'built-as-user',
          'root-ok',
          'root',
          '/srv/site',
          'hi builder',
          'hello from the template',
          '755',
          'user',
          'copied notes',
          '',
        ]);
        // The start command is already running: the snapshot kept it.
        const served = await exec(
          id,
          'python3 -c "import urllib.request; print(urllib.request.urlopen(\'http://127.0.0.1:8000/index.html\').read().decode())"',
        );
        expect(served.stdout.trim()).toBe('hi builder');
        // ENV steps hold in the template's sandboxes too.
        expect((await exec(id, 'echo "$GREETING-$WHO"')).stdout).toBe('hi-builder\n');
        // So do the last WORKDIR and USER, as the defaults of commands.
        expect((await exec(id, 'pwd; id -un')).stdout).toBe('/srv/site\nuser\n');
      });
    }
    // The build's sandbox is gone and is never listed as the team's.
    const listed = await call('GET', '/v1/sandboxes');
    expect((listed.body.sandboxes as unknown[]).length).toBe(0);

    // Rebuilt unchanged: every step comes from the cache.
    const again = await call('POST', '/v1/builds', webapp());
    const rebuilt = await waitForBuild(again.body.id as string);
    expect(rebuilt.status).toBe('ready');
    expect(rebuilt.progress.cached).toBe(9);
    await withTemplateSandbox('webapp', async (id) => {
      expect((await exec(id, 'cat /srv/site/index.html')).stdout.trim()).toBe('hi builder');
    });
  });

  it("an administrator's build makes a platform template every team starts sandboxes from", async () => {
    const login = await apiCall(server.url, 'POST', '/v1/auth/login', {
      body: { email: 'admin@wrenn.local', password: server.adminPassword },
    });
    expect(login.status).toBe(200);
    const bearer = login.body.token as string;
    const res = await apiCall(server.url, 'POST', '/v1/admin/builds', {
      bearer,
      body: { template: 'plat-tools', recipe: ['USER root', 'RUN echo platform > /etc/plat'], kind: 'image' },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    for (;;) {
      const got = await apiCall(server.url, 'GET', `/v1/admin/builds/${res.body.id as string}`, { bearer });
      if (got.body.status === 'ready') break;
      expect(['waiting', 'building']).toContain(got.body.status);
      await new Promise((r) => setTimeout(r, 300));
    }
    // A team that is not the administrator's: the template is the platform's.
    const other = await teamApiKey(server.url, 'another-team@example.com');
    const listed = await apiCall(server.url, 'GET', '/v1/templates', { key: other });
    expect(listed.body.templates).toContainEqual(
      expect.objectContaining({ name: 'plat-tools', kind: 'image', platform: true }),
    );
    const created = await apiCall(server.url, 'POST', '/v1/sandboxes', {
      key: other,
      body: { template: 'plat-tools' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id as string;
    const out = await apiCall(server.url, 'POST', `/v1/sandboxes/${id}/exec`, {
      key: other,
      body: { cmd: 'cat /etc/plat' },
    });
    expect(out.body.stdout).toBe('platform\n');
    await apiCall(server.url, 'DELETE', `/v1/sandboxes/${id}`, { key: other });
  });

  it('a failing step ends the build in error naming the step, with its output; nothing is left running', async () => {
    const res = await call('POST', '/v1/builds', {
      template: 'broken',
      recipe: ['RUN echo fine', 'RUN echo about to fail >&2; exit 3', 'RUN echo never'],
    });
    const build = await waitForBuild(res.body.id as string);
    expect(build.status).toBe('error');
    expect(build.reason?.step).toBe('2');
    expect(build.reason?.message).toMatch(/exit code 3/);
    expect(build.reason?.log_tail.join('\n')).toContain('about to fail');
    const created = await call('POST', '/v1/sandboxes', { template: 'broken' });
    expect(created.status).toBe(409);
    await eventually(async () => {
      const state = await wrennHostState(testDataDir);
      expect(state.runscProcesses).toEqual([]);
    }, 15_000);
  });

  it('a start command that never gets ready, or a failing healthcheck, fails the build with what it printed', async () => {
    const notReady = await call('POST', '/v1/builds', {
      template: 'neverready',
      recipe: ['RUN true'],
      start_cmd: 'echo starting-up-now; sleep 1000',
      ready_cmd: 'test -f /tmp/never',
      ready_timeout_sec: 2,
    });
    const a = await waitForBuild(notReady.body.id as string);
    expect(a.status).toBe('error');
    expect(a.reason?.step).toBe('finalize');
    expect(a.reason?.message).toMatch(/^ready check did not pass within 2 s/);
    expect(a.reason?.log_tail.join('\n')).toContain('starting-up-now');
    const unhealthy = await call('POST', '/v1/builds', {
      template: 'unhealthy',
      recipe: ['RUN true'],
      healthcheck: 'echo sick >&2; exit 1',
      ready_timeout_sec: 2,
    });
    const b = await waitForBuild(unhealthy.body.id as string);
    expect(b.status).toBe('error');
    expect(b.reason?.message).toMatch(/^healthcheck did not pass within 2 s/);
    // A healthcheck that passes lets the build through.
    const healthy = await call('POST', '/v1/builds', {
      template: 'healthy',
      recipe: ['RUN echo ok > /tmp/ok'],
      healthcheck: 'test -f /tmp/ok',
    });
    expect((await waitForBuild(healthy.body.id as string)).status).toBe('ready');
  });

  it('a large COPY context is streamed through the server, never held in its memory', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'wrenn-big-ctx-'));
    try {
      // 256 MiB that do not compress: the upload and the copy into the sandbox carry all of it.
      execFileSync('sh', [
        '-c',
        `head -c ${256 << 20} /dev/urandom > ${dir}/big.bin && tar -cf ${dir}/ctx.tar -C ${dir} big.bin`,
      ]);
      const digest = (file: string) => execFileSync('sha256sum', [file]).toString().split(' ')[0]!;
      const tarHash = digest(path.join(dir, 'ctx.tar'));
      const fileHash = digest(path.join(dir, 'big.bin'));
      global.gc?.();
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
      try {
        const up = await uploadFile(`${server.url}/v1/builds/files/${tarHash}`, path.join(dir, 'ctx.tar'));
        expect(up.status, up.body).toBe(200);
        const res = await call('POST', '/v1/builds', {
          template: 'bigcopy',
          kind: 'image',
          recipe: ['COPY big.bin /home/user/big.bin'],
          context_hash: tarHash,
          disk_mb: 2048,
        });
        const build = await waitForBuild(res.body.id as string);
        expect(build.status, JSON.stringify(build)).toBe('ready');
      } finally {
        clearInterval(sampler);
      }
      // The server (this process) grew by far less than what went through it.
      expect(peak - before).toBeLessThan(128 << 20);
      await withTemplateSandbox('bigcopy', async (id) => {
        expect((await exec(id, 'sha256sum /home/user/big.bin')).stdout.split(' ')[0]).toBe(fileHash);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an image-only build boots as a template (the root filesystem, no processes)', async () => {
    const res = await call('POST', '/v1/builds', {
      template: 'plainimage',
      kind: 'image',
      recipe: ['USER root', 'RUN echo in-the-image > /etc/marker'],
    });
    const build = await waitForBuild(res.body.id as string);
    expect(build.status, JSON.stringify(build)).toBe('ready');
    await withTemplateSandbox('plainimage', async (id) => {
      expect((await exec(id, 'cat /etc/marker')).stdout.trim()).toBe('in-the-image');
    });
  });

  it('cancel stops a running build and destroys its sandbox; two run at once, the third waits', async () => {
    const started = await Promise.all(
      [1, 2, 3].map((n) =>
        call('POST', '/v1/builds', { template: `slow${n}`, recipe: [`RUN sleep 30 # ${n}`] }),
      ),
    );
    const ids = started.map((r) => r.body.id as string);
    // Two building, the third waiting behind them (WRENN_BUILD_WORKERS=2).
    await eventually(async () => {
      const states = await Promise.all(
        ids.map(async (id) => (await call('GET', `/v1/builds/${id}`)).body.status),
      );
      expect(states.filter((s) => s === 'building').length).toBe(2);
      expect(states.filter((s) => s === 'waiting').length).toBe(1);
    }, 60_000);
    const building = [];
    for (const id of ids)
      if ((await call('GET', `/v1/builds/${id}`)).body.status === 'building') building.push(id);
    // Cancel everything: the running ones stop, the waiting one never starts.
    for (const id of ids) expect((await call('POST', `/v1/builds/${id}/cancel`)).status).toBe(200);
    for (const id of ids) expect((await waitForBuild(id)).status).toBe('cancelled');
    await eventually(async () => {
      const state = await wrennHostState(testDataDir);
      expect(state.runscProcesses).toEqual([]);
    }, 15_000);
    expect(building.length).toBe(2);
  });
});
