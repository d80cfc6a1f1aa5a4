import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { hostagent } from '@wrenn/contracts';
import {
  rpcError,
  sh,
  startAgentProcess,
  installDir,
  testDataDir,
  withSandbox,
  type AgentProcess,
} from './support/agent-process.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
});

const { PAUSED, RUNNING } = hostagent.SandboxStatus;
const execFileAsync = promisify(execFile);

// A counter that a shell loop bumps in a file five times a second (written beside, then renamed: a
// reader must never catch it truncated), and an HTTP server.
const START_WORKLOAD = [
  "nohup bash -c 'i=0; while true; do i=$((i+1)); echo $i > /home/user/.counter; mv /home/user/.counter /home/user/counter; sleep 0.2; done' >/dev/null 2>&1 &",
  'cd /home/user && echo served-before-pause > index.html && nohup python3 -m http.server 8000 >/dev/null 2>&1 &',
  'for i in $(seq 50); do curl -sf localhost:8000/ >/dev/null && break; sleep 0.1; done',
].join('\n');

async function counter(id: string): Promise<number> {
  return Number((await sh(agent.client, id, 'cat /home/user/counter')).stdout.trim());
}

describe('pause and resume by checkpoint (real gVisor)', () => {
  it('frees the runtime, slot and memory on pause; processes, files and servers continue on resume', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      expect((await sh(agent.client, id, START_WORKLOAD)).exitCode).toBe(0);
      await sh(
        agent.client,
        id,
        'echo written-before-pause > /home/user/note.txt; mkdir -p /tmp/t && echo tmp > /tmp/t/x',
      );
      await new Promise((r) => setTimeout(r, 600));
      const before = await counter(id);
      expect(before).toBeGreaterThan(0);

      const running = await wrennHostState(testDataDir);
      expect(running.netns).toHaveLength(1);
      expect(running.runscProcesses.length).toBeGreaterThan(0);
      expect(running.cgroups).toContain(`memory/wrenn/${id}`);

      const { sandbox } = await agent.client.pauseSandbox({ sandboxId: id });
      expect(sandbox?.status).toBe(PAUSED);
      expect(sandbox?.autoPaused).toBe(false);
      // Nothing runs for it any more: no runsc process, no netns or veth, no mounts, no cgroup (the
      // memory went with it). Only its directory (the disk layer and the checkpoint) stays. The agent
      // answers once the image is on disk and frees the rest right after.
      await eventually(async () => {
        const atPause = await wrennHostState(testDataDir);
        expect({ ...atPause, iptablesRules: [], sandboxDirs: [] }).toEqual(EMPTY_HOST_STATE);
        expect(atPause.sandboxDirs).toEqual([id]);
      });
      expect((await agent.client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(PAUSED);
      // A paused sandbox is not usable, and says so.
      const err = await rpcError(sh(agent.client, id, 'true'));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toMatch(/paused/);

      await new Promise((r) => setTimeout(r, 1000));
      const resumed = await agent.client.resumeSandbox({ sandboxId: id });
      expect(resumed.sandbox?.status).toBe(RUNNING);
      const after = await counter(id);
      // The loop continued from its own value: not restarted (it would be small), not lost.
      expect(after).toBeGreaterThanOrEqual(before);
      expect(after).toBeLessThan(before + 20);
      await new Promise((r) => setTimeout(r, 1000));
      expect(await counter(id)).toBeGreaterThan(after);
      const check = await sh(
        agent.client,
        id,
        'cat /home/user/note.txt /tmp/t/x; curl -sf localhost:8000/index.html',
      );
      expect(check.stdout).toBe('written-before-pause\ntmp\nserved-before-pause\n');
      // Reachable from the host again, through its new slot.
      const [host, port] = resumed.sandbox!.envdAddress.split(':');
      const health = await fetch(`http://${host}:${port}/health`);
      expect(health.status).toBe(204);
    });
  });

  it('pauses and resumes a sandbox that touched 512 MiB with its memory intact', async () => {
    await withSandbox(agent.client, { memoryMb: 1536 }, async (id) => {
      const program = [
        'import hashlib, os, time',
        'blocks = [os.urandom(1 << 20) for _ in range(512)]',
        "digest = lambda: hashlib.sha256(b''.join(blocks)).hexdigest()",
        "open('/tmp/before.tmp', 'w').write(digest()); os.rename('/tmp/before.tmp', '/tmp/before')",
        "while not os.path.exists('/tmp/go'): time.sleep(0.1)",
        "open('/tmp/after.tmp', 'w').write(digest()); os.rename('/tmp/after.tmp', '/tmp/after')",
        'time.sleep(3600)',
      ].join('\n');
      await agent.client.writeFile({ sandboxId: id, path: '/tmp/hold.py', content: Buffer.from(program) });
      await sh(agent.client, id, 'nohup python3 /tmp/hold.py >/tmp/hold.log 2>&1 &');
      const ready = await sh(
        agent.client,
        id,
        'while [ ! -f /tmp/before ]; do sleep 0.2; done; cat /tmp/before',
        {
          timeoutMs: 120_000,
        },
      );
      expect(ready.stdout).toMatch(/^[0-9a-f]{64}$/);
      const rss = await sh(agent.client, id, 'ps -o rss= -C python3 | sort -n | tail -1');
      expect(Number(rss.stdout.trim())).toBeGreaterThan(512 * 1024);

      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.resumeSandbox({ sandboxId: id });
      const after = await sh(
        agent.client,
        id,
        'touch /tmp/go; while [ ! -f /tmp/after ]; do sleep 0.2; done; cat /tmp/after',
        {
          timeoutMs: 120_000,
        },
      );
      expect(after.stdout).toBe(ready.stdout);
    });
  });

  it('survives pause → resume five times in a row', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      await sh(
        agent.client,
        id,
        "nohup python3 -c \"import os, time\nn=0\nwhile True:\n  n+=1; open('/tmp/n.tmp','w').write(str(n)); os.rename('/tmp/n.tmp', '/tmp/n'); time.sleep(0.1)\" >/dev/null 2>&1 &",
      );
      let last = 0;
      for (let round = 1; round <= 5; round++) {
        await agent.client.pauseSandbox({ sandboxId: id });
        const { sandbox } = await agent.client.resumeSandbox({ sandboxId: id });
        expect(sandbox?.status).toBe(RUNNING);
        await sh(agent.client, id, `echo ${round} >> /home/user/rounds`);
        await new Promise((r) => setTimeout(r, 300));
        const n = Number((await sh(agent.client, id, 'cat /tmp/n')).stdout);
        expect(n).toBeGreaterThan(last);
        last = n;
      }
      expect((await sh(agent.client, id, 'cat /home/user/rounds')).stdout).toBe('1\n2\n3\n4\n5\n');
    });
  });

  it('resumes a checkpoint taken with envd quiesced, as agents took them before they stopped quiescing', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      await sh(agent.client, id, 'echo kept > /home/user/kept');
      const { sandbox } = await agent.client.getSandbox({ sandboxId: id });
      const [host = '', port] = sandbox!.envdAddress.split(':');
      const refuses = () =>
        new Promise<boolean>((resolve) => {
          const socket = net.connect({ host, port: Number(port) });
          socket.setTimeout(500, () => (socket.destroy(), resolve(false)));
          socket.once('connect', () => (socket.destroy(), resolve(false)));
          socket.once('error', () => resolve(true));
        });
      // What the older agents' pause did first: envd closes its port on SIGUSR2.
      await execFileAsync(path.join(installDir, 'bin/runsc'), [
        `--root=${path.join(testDataDir, 'run/runsc')}`,
        'kill',
        id,
        'SIGUSR2',
      ]);
      await eventually(async () => expect(await refuses()).toBe(true));
      await agent.client.pauseSandbox({ sandboxId: id });
      const resumed = await agent.client.resumeSandbox({ sandboxId: id });
      expect(resumed.sandbox?.status).toBe(RUNNING);
      // Its port refused after the restore, so the agent woke it.
      expect((await sh(agent.client, id, 'cat /home/user/kept')).stdout).toBe('kept\n');
    });
  });

  it('treats pause of a paused and resume of a running sandbox as no-ops, and refuses bad ids', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      expect((await agent.client.resumeSandbox({ sandboxId: id })).sandbox?.status).toBe(RUNNING);
      await agent.client.pauseSandbox({ sandboxId: id });
      expect((await agent.client.pauseSandbox({ sandboxId: id })).sandbox?.status).toBe(PAUSED);
      const listed = (await agent.client.listSandboxes({})).sandboxes.find((s) => s.id === id);
      expect(listed?.status).toBe(PAUSED);
      expect(listed?.pausedAt).toBeDefined();
      // Destroying a paused sandbox removes its layer and checkpoint too.
    });
    expect((await wrennHostState(testDataDir)).sandboxDirs).toEqual([]);
    expect((await rpcError(agent.client.pauseSandbox({ sandboxId: '../etc' }))).code).toBe(
      Code.InvalidArgument,
    );
    expect((await rpcError(agent.client.resumeSandbox({ sandboxId: 'nosuchsandbox' }))).code).toBe(
      Code.NotFound,
    );
    const neg = await rpcError(agent.client.resumeSandbox({ sandboxId: 'nosuchsandbox', timeoutSec: -1 }));
    expect(neg.code).toBe(Code.InvalidArgument);
    expect(neg.rawMessage).toMatch(/^timeout_sec:/);
  });
});

describe('a paused sandbox outlives the agent', () => {
  it('is adopted by the next agent and resumes there', async () => {
    const { sandbox } = await agent.client.createSandbox({});
    const id = sandbox!.id;
    await sh(agent.client, id, 'echo kept > /home/user/kept; nohup sleep 10000 >/dev/null 2>&1 &');
    await agent.client.pauseSandbox({ sandboxId: id });
    await agent.stop();
    agent = await startAgentProcess({}, { keepPaused: true });
    const listed = (await agent.client.listSandboxes({})).sandboxes.find((s) => s.id === id);
    expect(listed?.status).toBe(PAUSED);
    await agent.client.resumeSandbox({ sandboxId: id });
    const check = await sh(
      agent.client,
      id,
      'cat /home/user/kept; pgrep -f "sleep 10000" >/dev/null && echo sleeping',
    );
    expect(check.stdout).toBe('kept\nsleeping\n');
    await agent.client.destroySandbox({ sandboxId: id });
  });
});
