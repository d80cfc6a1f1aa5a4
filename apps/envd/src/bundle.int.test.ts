import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { process as processpb } from '@wrenn/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect } from './testing/process-events.js';

// Proves the shipped artifact: envd.mjs, built away from every node_modules, run by a bare
// `node` with nothing but its own dist/ folder — which is how sandboxes run it.
const appDir = fileURLToPath(new URL('..', import.meta.url));
let workDir: string;
let child: ChildProcess | undefined;
let baseUrl: string;
let stderr = '';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

async function health(): Promise<number | string> {
  try {
    return (await fetch(`${baseUrl}/health`)).status;
  } catch (err) {
    return (err as Error).message;
  }
}

async function waitForHealth(expected: number | 'down', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await health();
    if (expected === 'down' ? typeof status === 'string' : status === expected) return;
    if (Date.now() > deadline)
      throw new Error(`health is ${status}, wanted ${expected}; envd stderr:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'envd-bundle-'));
  // Built straight into the copy's place: dist/ itself may be mounted into running sandboxes.
  await promisify(execFile)(process.execPath, ['build.mjs'], {
    cwd: appDir,
    env: { ...process.env, ENVD_DIST: join(workDir, 'envd') },
  });
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  child = spawn(process.execPath, [join(workDir, 'envd', 'envd.mjs')], {
    cwd: workDir,
    env: {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      ENVD_PORT: String(port),
      ENVD_HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await waitForHealth(204);
}, 120_000);

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await rm(workDir, { recursive: true, force: true });
});

describe('bundled dist/envd.mjs', () => {
  it('serves Start over Connect JSON, with a PTY from the copied node-pty', async () => {
    const transport = createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: false });
    const client = createClient(processpb.Process, transport);
    const run = await collect(
      client.start({ process: { cmd: '/bin/sh', args: ['-c', 'echo bundled'] }, stdin: false }),
    );
    expect(run.stdout).toBe('bundled\n');
    expect(run.end?.exitCode).toBe(0);

    const pty = await collect(
      client.start({
        process: { cmd: '/bin/sh', args: ['-c', 'tty; stty size'] },
        pty: { size: { cols: 91, rows: 17 } },
      }),
    );
    expect(pty.pty).toMatch(/\/dev\/pts\/\d+/);
    expect(pty.pty).toContain('17 91');
    expect(stderr).toContain('"msg":"envd started"');
    // dist/bin/wrenn-forkserver was found next to the bundle and forks the pipe processes.
    expect(stderr).toContain('"msg":"fork-server started"');
    const parent = await collect(
      client.start({ process: { cmd: '/bin/sh', args: ['-c', 'cat /proc/$PPID/comm'] }, stdin: false }),
    );
    expect(parent.stdout).toBe('wrenn-forkserve\n');
  });

  it('quiesces on SIGUSR2, resumes on SIGUSR1 and exits cleanly on SIGTERM', async () => {
    child?.kill('SIGUSR2');
    await waitForHealth('down');
    child?.kill('SIGUSR1');
    await waitForHealth(204);
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    child?.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
