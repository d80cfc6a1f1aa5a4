import type { ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installDir, sleep } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';
import { printedApiUrl, startWrenn } from './support/wrenn-process.js';

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
  const { child, stdout, exited, logs } = await startWrenn('up', dataDir, /^Try: /m, { LOG_LEVEL: 'info' });
  const key = (await readFile(path.join(dataDir, 'server/admin-api-key'), 'utf8')).trim();
  return { child, exited, api: printedApiUrl(stdout), key, logs };
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
