import type { ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installDir } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';
import { printedApiUrl, startWrenn, type WrennProcess } from './support/wrenn-process.js';

// `wrenn up`, the README's first command after setup: agent + control plane in one process.
const dataDir = path.join(installDir, 'e2e-up');
// An install from before `wrenn up` registered its agent: `wrenn server` with a static host.
const olderDir = path.join(installDir, 'e2e-up-older');

interface Up {
  child: ChildProcess;
  api: string;
  key: string;
  password: string | undefined;
  /** Whether this start printed the admin's key and password (only the start that made them). */
  printedSecrets?: boolean;
  /** The platform host its agent is, from its first lines. */
  hostId: string;
  exited: Promise<number | null>;
}

/**
 * `wrenn up` on `dir`. The admin's key and password are printed only by the start that made them;
 * later starts print where they are kept (and the secrets themselves appear nowhere in the output),
 * so they are read from there.
 */
async function wrennUp(dir = dataDir): Promise<Up> {
  const { child, stdout, exited } = await startWrenn('up', dir, /^Try: /m);
  const printedKey = /admin API key .*: (wrn_\S+)/.exec(stdout)?.[1];
  const keyFile = path.join(dir, 'server/admin-api-key');
  const passwordFile = path.join(dir, 'server/admin-password');
  const key = printedKey ?? (await readFile(keyFile, 'utf8')).trim();
  const password =
    /admin login .*: admin@wrenn\.local \/ (\S+)/.exec(stdout)?.[1] ??
    (await readFile(passwordFile, 'utf8').catch(() => '')).trim();
  if (!printedKey) {
    expect(stdout).toContain(`kept in ${keyFile} and ${passwordFile} (0600)`);
    expect(stdout).not.toContain(key);
    if (password) expect(stdout).not.toContain(password);
  }
  return {
    child,
    exited,
    printedSecrets: printedKey !== undefined,
    api: printedApiUrl(stdout),
    key,
    password: password || undefined,
    hostId: /host agent: https:\/\/\S+ \(platform host ([0-9a-f-]{36}), mutual TLS\)/.exec(stdout)![1]!,
  };
}

const call = (up: Up, method: string, url: string, opts: { body?: unknown; bearer?: string } = {}) =>
  apiCall(up.api, method, url, opts.bearer ? opts : { ...opts, key: up.key });

async function interrupt(up: Up): Promise<number | null> {
  up.child.kill('SIGINT');
  return up.exited;
}

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
  await rm(olderDir, { recursive: true, force: true });
});

const adminHosts = async (up: Up, token: string) =>
  (await call(up, 'GET', '/v1/admin/hosts', { bearer: token })).body.hosts as Record<string, unknown>[];

/** envd's health check inside the sandbox, through the control plane's sandbox proxy. */
const proxiedHealth = async (up: Up, id: string) =>
  (await fetch(`${up.api}/health`, { headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '49983' } }))
    .status;

describe('wrenn up', () => {
  it('registers its agent as a platform host, stops cleanly on Ctrl-C, and keeps its data and paused sandboxes', async () => {
    await rm(dataDir, { recursive: true, force: true });
    const first = await wrennUp();
    let second: Up | undefined;
    try {
      expect(first.password).toBeDefined();
      expect(first.printedSecrets).toBe(true);
      const created = await call(first, 'POST', '/v1/sandboxes', { body: { timeout_sec: 0 } });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      const exec = await call(first, 'POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'echo up' } });
      expect(exec.body.stdout).toBe('up\n');
      expect(await proxiedHealth(first, id)).toBe(204);
      const login = await call(first, 'POST', '/v1/auth/login', {
        body: { email: 'admin@wrenn.local', password: first.password },
      });
      const token = login.body.token as string;
      // The agent `wrenn up` started registered itself: one platform host, not static, whose
      // heartbeats carry its capacity and the sandbox it runs.
      await eventually(async () => {
        expect(await adminHosts(first, token)).toMatchObject([
          {
            id: first.hostId,
            is_static: false,
            kind: 'platform',
            status: 'online',
            running_count: 1,
            sandbox_count: 1,
            capacity: { cpu_cores: expect.any(Number) as number },
            last_heartbeat_at: expect.any(String) as string,
          },
        ]);
      }, 15_000);
      expect(created.body.host_id).toBe(first.hostId);
      // Its credentials are in its data dir: the next start needs no token.
      const stored = JSON.parse(await readFile(path.join(dataDir, 'credentials/host.json'), 'utf8')) as {
        host_id: string;
      };
      expect(stored.host_id).toBe(first.hostId);
      expect((await fetch(`${first.api}/docs`)).status).toBe(200);

      const kept = (await call(first, 'POST', '/v1/sandboxes', { body: { timeout_sec: 0 } })).body
        .id as string;
      await call(first, 'POST', `/v1/sandboxes/${kept}/exec`, { body: { cmd: 'echo kept > /tmp/mark' } });
      expect((await call(first, 'POST', `/v1/sandboxes/${kept}/pause`)).body.status).toBe('paused');

      // Ctrl-C: everything stops; of the sandboxes only the paused one's files remain.
      expect(await interrupt(first)).toBe(0);
      expect(await wrennHostState(dataDir)).toEqual({ ...EMPTY_HOST_STATE, sandboxDirs: [kept] });

      // The same data on the next start: same key, admin and host (its stored credentials, no
      // token, no second host); the running sandbox that went with the last agent is marked
      // stopped, the paused one is still paused and resumes with its files.
      second = await wrennUp();
      expect(second.printedSecrets).toBe(false);
      expect(second.key).toBe(first.key);
      expect(second.password).toBe(first.password);
      expect(second.hostId).toBe(first.hostId);
      await eventually(async () => {
        const list = (await call(second!, 'GET', '/v1/sandboxes')).body.sandboxes as { id: string }[];
        expect(list.map((s) => s.id)).toEqual([kept]);
      }, 15_000);
      expect((await call(second, 'GET', `/v1/sandboxes/${id}`)).status).toBe(404);
      expect((await call(second, 'GET', `/v1/sandboxes/${kept}`)).body.status).toBe('paused');
      const hosts = await adminHosts(second, token);
      expect(hosts).toMatchObject([{ id: first.hostId, is_static: false, status: 'online' }]);
      expect((await call(second, 'POST', `/v1/sandboxes/${kept}/resume`)).body.status).toBe('running');
      const mark = await call(second, 'POST', `/v1/sandboxes/${kept}/exec`, {
        body: { cmd: 'cat /tmp/mark' },
      });
      expect(mark.body.stdout).toBe('kept\n');
      expect(await proxiedHealth(second, kept)).toBe(204);
      expect(await interrupt(second)).toBe(0);
    } finally {
      for (const up of [first, second]) if (up && up.child.exitCode === null) await interrupt(up);
    }
  });

  it('takes over the static host of an install from before, with its paused sandbox', async () => {
    await rm(olderDir, { recursive: true, force: true });
    // What `wrenn up` was: an unregistered agent, and the server naming it as its static host.
    const agent = await startWrenn('agent', olderDir, /listening on http:\/\/\S+/);
    const agentUrl = /listening on (http:\/\/\S+)/.exec(agent.stdout)![1]!;
    let server: WrennProcess | undefined;
    let up: Up | undefined;
    try {
      server = await startWrenn('server', olderDir, /listening on http:\/\/\S+/, {
        WRENN_AGENT_URL: agentUrl,
      });
      const api = /listening on (http:\/\/\S+) /.exec(server.stdout)![1]!;
      const key = (await readFile(path.join(olderDir, 'server/admin-api-key'), 'utf8')).trim();
      const password = (await readFile(path.join(olderDir, 'server/admin-password'), 'utf8')).trim();
      const older: Up = { ...server, api, key, password, hostId: '' };
      const id = (await call(older, 'POST', '/v1/sandboxes', { body: { timeout_sec: 0 } })).body.id as string;
      await call(older, 'POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'echo older > /tmp/mark' } });
      expect((await call(older, 'POST', `/v1/sandboxes/${id}/pause`)).body.status).toBe('paused');
      const login = await call(older, 'POST', '/v1/auth/login', {
        body: { email: 'admin@wrenn.local', password },
      });
      const token = login.body.token as string;
      const [staticHost] = await adminHosts(older, token);
      expect(staticHost).toMatchObject({ is_static: true, sandbox_count: 1 });
      server.child.kill('SIGINT');
      expect(await server.exited).toBe(0);
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toBe(0);

      // `wrenn up` on that data: its agent registers as the static host, which stops being static
      // and keeps its id, its sandbox paused and resumable with its files.
      up = await wrennUp(olderDir);
      expect(up.hostId).toBe(staticHost!.id);
      await eventually(async () => {
        expect(await adminHosts(up!, token)).toMatchObject([
          { id: staticHost!.id, is_static: false, status: 'online', paused_count: 1, sandbox_count: 1 },
        ]);
      }, 15_000);
      expect((await call(up, 'GET', `/v1/sandboxes/${id}`)).body.status).toBe('paused');
      expect((await call(up, 'POST', `/v1/sandboxes/${id}/resume`)).body.status).toBe('running');
      const mark = await call(up, 'POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'cat /tmp/mark' } });
      expect(mark.body.stdout).toBe('older\n');
      expect(await interrupt(up)).toBe(0);
    } finally {
      if (up && up.child.exitCode === null) await interrupt(up);
      for (const p of [server, agent]) if (p && p.child.exitCode === null) p.child.kill('SIGTERM');
      await Promise.all([server?.exited, agent.exited]);
    }
  });
});
