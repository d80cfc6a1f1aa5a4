import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { startAgentProcess, sh, type AgentProcess } from './support/agent-process.js';

let agent: AgentProcess;
let sandboxId: string;

beforeAll(async () => {
  agent = await startAgentProcess();
  const { sandbox } = await agent.client.createSandbox({ template: 'base' });
  sandboxId = sandbox!.id;
});

afterAll(async () => {
  if (sandboxId) await agent.client.destroySandbox({ sandboxId }).catch(() => undefined);
  await agent?.stop();
});

describe('exec in a real gVisor sandbox', () => {
  it('runs echo hello', async () => {
    const res = await sh(agent.client, sandboxId, 'echo hello');
    expect(res).toMatchObject({ exitCode: 0, stdout: 'hello\n', stderr: '', timedOut: false });
  });

  it('runs python3', async () => {
    const res = await sh(agent.client, sandboxId, "python3 -c 'print(6*7)'");
    expect(res.stdout).toBe('42\n');
    expect(res.exitCode).toBe(0);
  });

  it('reports a non-zero exit code and stderr as such', async () => {
    const res = await sh(agent.client, sandboxId, 'echo out; echo oops >&2; exit 3');
    expect(res).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'oops\n', timedOut: false });
  });

  it('runs argv commands without a shell, with env, cwd and stdin', async () => {
    const res = await agent.client.exec({
      sandboxId,
      command: {
        cmd: '/usr/bin/python3',
        args: ['-c', 'import os,sys; print(os.getcwd(), os.environ["GREETING"], sys.stdin.read().upper())'],
        env: { GREETING: 'hi' },
        cwd: '/tmp',
        stdin: Buffer.from('piped'),
      },
    });
    expect(Buffer.from(res.stdout).toString()).toBe('/tmp hi PIPED\n');
  });

  it('kills a command past its timeout and reports it as timed out', async () => {
    const started = Date.now();
    const res = await sh(agent.client, sandboxId, 'echo before; sleep 30; echo after', { timeoutMs: 1500 });
    expect(res.timedOut).toBe(true);
    expect(res.stdout).toBe('before\n');
    expect(Date.now() - started).toBeLessThan(25_000);
    // The process is really gone, not just abandoned.
    const ps = await sh(agent.client, sandboxId, 'ps -eo args');
    expect(ps.stdout).not.toContain('sleep 30');
  });

  it('streams 100,000 lines, all of them, in order', async () => {
    const lines: string[] = [];
    let partial = '';
    let exitCode: number | undefined;
    const stream = agent.client.execStream({
      sandboxId,
      command: { cmd: 'seq 1 100000', timeoutMs: 120_000 },
    });
    for await (const msg of stream) {
      if (msg.event.case === 'stdout') {
        const text = partial + Buffer.from(msg.event.value).toString();
        const parts = text.split('\n');
        partial = parts.pop()!;
        lines.push(...parts);
      } else if (msg.event.case === 'exited') {
        exitCode = msg.event.value.exitCode;
      }
    }
    expect(exitCode).toBe(0);
    expect(partial).toBe('');
    expect(lines.length).toBe(100_000);
    expect(lines.every((l, i) => l === String(i + 1))).toBe(true);
  });

  it('keeps agent memory bounded while a large stream passes through', async () => {
    const rss = async () =>
      Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${agent.child.pid}/status`, 'utf8'))![1]) * 1024;
    const before = await rss();
    let bytes = 0;
    let peak = before;
    const stream = agent.client.execStream({
      sandboxId,
      command: { cmd: 'head -c 209715200 /dev/zero', timeoutMs: 300_000 },
    });
    let n = 0;
    for await (const msg of stream) {
      if (msg.event.case === 'stdout') bytes += msg.event.value.byteLength;
      if (++n % 200 === 0) peak = Math.max(peak, await rss());
    }
    expect(bytes).toBe(209_715_200);
    // 200 MiB went through; the agent must not have held it (it forwards with backpressure).
    expect(peak - before).toBeLessThan(100 * 1024 * 1024);
  });
});
