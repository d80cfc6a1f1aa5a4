import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installDir, repoRoot, sleep } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

// `wrenn up` (control plane + agent in one process) killed with SIGKILL and started again.
const dataDir = path.join(installDir, 'e2e-up-restart');

interface Up {
  child: ChildProcess;
  api: string;
  key: string;
  exited: Promise<number | null>;
  logs: () => string;
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
      WRENN_HEARTBEAT_SEC: '1',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-200_000)));
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
  const key = (await readFile(path.join(dataDir, 'server/admin-api-key'), 'utf8')).trim();
  return { child, exited, api: /API:\s+(http:\/\/\S+)\/v1/.exec(stdout)![1]!, key, logs: () => stderr };
}

const call = (up: Up, method: string, url: string, body?: unknown) =>
  apiCall(up.api, method, url, { key: up.key, body });

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('wrenn up killed with SIGKILL', () => {
  it('keeps its running sandbox: after the restart its row stays running and it still works', async () => {
    await rm(dataDir, { recursive: true, force: true });
    let up = await wrennUp();
    let id = '';
    try {
      id = (await call(up, 'POST', '/v1/sandboxes', { timeout_sec: 0 })).body.id as string;
      const mark = await call(up, 'POST', `/v1/sandboxes/${id}/exec`, {
        cmd: 'echo before > /tmp/mark; nohup sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/sleeper',
      });
      expect(mark.status).toBe(200);
      const sleeper = (await call(up, 'POST', `/v1/sandboxes/${id}/exec`, { cmd: 'cat /tmp/sleeper' })).body
        .stdout as string;

      up.child.kill('SIGKILL');
      await up.exited;
      up = await wrennUp();
      expect(up.logs()).not.toMatch(/removed leftover runsc sandboxes/);
      await eventually(async () => {
        expect((await call(up, 'GET', `/v1/sandboxes/${id}`)).body.status).toBe('running');
      }, 15_000);
      // Through more than two reconciler passes (5 s each): still running.
      await sleep(11_000);
      expect((await call(up, 'GET', `/v1/sandboxes/${id}`)).body).toMatchObject({ status: 'running' });
      const after = await call(up, 'POST', `/v1/sandboxes/${id}/exec`, {
        cmd: `cat /tmp/mark; kill -0 ${sleeper.trim()} && echo alive`,
      });
      expect(after.body.stdout).toBe('before\nalive\n');
      expect((await call(up, 'DELETE', `/v1/sandboxes/${id}`)).status).toBe(204);
    } finally {
      if (up.child.exitCode === null) {
        up.child.kill('SIGINT');
        await up.exited;
      }
    }
    expect(await wrennHostState(dataDir)).toEqual(EMPTY_HOST_STATE);
  });
});
