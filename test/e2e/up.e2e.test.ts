import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installDir, repoRoot } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

// `wrenn up`, the README's first command after setup: agent + control plane in one process.
const dataDir = path.join(installDir, 'e2e-up');

interface Up {
  child: ChildProcess;
  api: string;
  key: string;
  password: string | undefined;
  exited: Promise<number | null>;
}

async function wrennUp(): Promise<Up> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'apps/cli/bin/wrenn.js'), 'up'], {
    env: {
      ...process.env,
      WRENN_DIR: dataDir,
      WRENN_IMAGES_DIR: path.join(installDir, 'images'),
      WRENN_RUNSC: path.join(installDir, 'bin/runsc'),
      WRENN_AGENT_LISTEN: '127.0.0.1:0',
      WRENN_SERVER_LISTEN: '127.0.0.1:0',
      WRENN_SANDBOX_NAMESERVERS: '',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-50_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stdout = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`wrenn up did not come up in 90 s:\n${out}\n${stderr}`)),
      90_000,
    );
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (/^Try: /m.test(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.once('exit', (code) => reject(new Error(`wrenn up exited with ${code}:\n${out}\n${stderr}`)));
  });
  return {
    child,
    exited,
    api: /API:\s+(http:\/\/\S+)\/v1/.exec(stdout)![1]!,
    key: /admin API key .*: (wrn_\S+)/.exec(stdout)![1]!,
    password: /admin login .*: admin@wrenn\.local \/ (\S+)/.exec(stdout)?.[1],
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
});

describe('wrenn up', () => {
  it('runs the agent and the API with a first admin, stops cleanly on Ctrl-C, and keeps its data', async () => {
    await rm(dataDir, { recursive: true, force: true });
    const first = await wrennUp();
    let second: Up | undefined;
    try {
      expect(first.password).toBeDefined();
      const created = await call(first, 'POST', '/v1/sandboxes', { body: { timeout_sec: 0 } });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      const exec = await call(first, 'POST', `/v1/sandboxes/${id}/exec`, { body: { cmd: 'echo up' } });
      expect(exec.body.stdout).toBe('up\n');
      const login = await call(first, 'POST', '/v1/auth/login', {
        body: { email: 'admin@wrenn.local', password: first.password },
      });
      const token = login.body.token as string;
      const hosts = await call(first, 'GET', '/v1/admin/hosts', { bearer: token });
      // The agent `wrenn up` started is the control plane's static host: asked when listed.
      expect(hosts.body).toMatchObject({
        hosts: [{ is_static: true, kind: 'platform', status: 'online', running_count: 1, sandbox_count: 1 }],
      });
      expect(created.body.host_id).toBe((hosts.body.hosts as { id: string }[])[0]!.id);
      expect((await fetch(`${first.api}/docs`)).status).toBe(200);

      // Ctrl-C: everything stops, nothing of the sandbox remains on the host.
      expect(await interrupt(first)).toBe(0);
      expect(await wrennHostState(dataDir)).toEqual(EMPTY_HOST_STATE);

      // The same data on the next start: same key and admin; the sandbox that went with the last
      // agent is marked stopped by the reconciler.
      second = await wrennUp();
      expect(second.key).toBe(first.key);
      expect(second.password).toBe(first.password);
      await eventually(async () => {
        expect((await call(second!, 'GET', '/v1/sandboxes')).body.sandboxes).toEqual([]);
      }, 15_000);
      expect((await call(second, 'GET', `/v1/sandboxes/${id}`)).status).toBe(404);
      expect(await interrupt(second)).toBe(0);
    } finally {
      for (const up of [first, second]) if (up && up.child.exitCode === null) await interrupt(up);
    }
  });
});
