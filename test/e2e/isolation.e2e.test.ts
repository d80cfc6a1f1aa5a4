import { createServer, Socket, type Server } from 'node:net';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostagent } from '@wrenn/contracts';
import { startAgentProcess, sh, type AgentProcess } from './support/agent-process.js';

let agent: AgentProcess;
let a: { id: string; envd: string };
let b: { id: string; envd: string };
// A service of the host's, listening on every address: what a sandbox must not reach.
let hostService: Server;
let hostServicePort: number;

// Prints "host:port open|blocked" for each target, connecting with a short timeout.
const PROBE = `
import socket, sys
for t in sys.argv[1:]:
    h, p = t.rsplit(':', 1)
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((h, int(p))); print(t, 'open')
    except Exception as e:
        print(t, 'blocked', type(e).__name__)
    finally:
        s.close()
`;

async function probe(sandboxId: string, targets: string[]): Promise<Record<string, string>> {
  await agentWrite(sandboxId, '/tmp/probe.py', PROBE);
  const res = await sh(agent.client, sandboxId, `python3 /tmp/probe.py ${targets.join(' ')}`, {
    timeoutMs: 60_000,
  });
  expect(res.exitCode).toBe(0);
  return Object.fromEntries(
    res.stdout
      .trim()
      .split('\n')
      .map((l) => [l.split(' ')[0]!, l.split(' ')[1]!]),
  );
}

async function agentWrite(sandboxId: string, path: string, text: string) {
  await agent.client.writeFile({ sandboxId, path, content: Buffer.from(text), user: 'root' });
}

function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((i) => i && i.family === 'IPv4' && !i.internal)
    .map((i) => i!.address);
}

beforeAll(async () => {
  // With slots built ahead (the default): a sandbox in one is as isolated as in one built for it.
  agent = await startAgentProcess({ WRENN_PREPARED_SLOTS: '2' });
  const [sa, sb] = await Promise.all([agent.client.createSandbox({}), agent.client.createSandbox({})]);
  a = { id: sa.sandbox!.id, envd: sa.sandbox!.envdAddress };
  b = { id: sb.sandbox!.id, envd: sb.sandbox!.envdAddress };
  hostService = createServer((s) => {
    s.on('error', () => undefined); // probes reset their connections
    s.end('host secret\n');
  });
  await new Promise<void>((r) => hostService.listen(0, '0.0.0.0', r));
  hostServicePort = (hostService.address() as { port: number }).port;
});

afterAll(async () => {
  hostService?.close();
  for (const s of [a, b])
    if (s) await agent.client.destroySandbox({ sandboxId: s.id }).catch(() => undefined);
  await agent?.stop();
});

describe('two sandboxes are isolated from each other and from the host', () => {
  it('neither sees the other’s files', async () => {
    await sh(agent.client, a.id, 'echo a-secret > /tmp/only-in-a; echo a-home > /home/user/only-in-a');
    const res = await sh(agent.client, b.id, 'ls /tmp/only-in-a /home/user/only-in-a 2>&1; echo rc=$?');
    expect(res.stdout).toContain('No such file or directory');
    expect(res.stdout).toContain('rc=2');
    expect((await sh(agent.client, a.id, 'cat /tmp/only-in-a')).stdout).toBe('a-secret\n');
  });

  it('neither sees the other’s processes, nor any of the host’s', async () => {
    await agent.client.exec({ sandboxId: b.id, command: { cmd: 'nohup sleep 4242 >/dev/null 2>&1 &' } });
    const inB = await sh(agent.client, b.id, 'ps -eo args');
    expect(inB.stdout).toContain('sleep 4242'); // positive control: ps does show processes
    const inA = await sh(agent.client, a.id, 'ps -eo pid,args');
    expect(inA.stdout).not.toContain('sleep 4242');
    for (const hostProcess of ['vitest', 'wrenn.js', 'runsc', 'postgres', 'redis']) {
      expect(inA.stdout).not.toContain(hostProcess);
    }
    // PID 1 is the sandbox's own init, not the host's.
    const init = await sh(agent.client, a.id, "tr '\\0' ' ' < /proc/1/cmdline");
    expect(init.stdout).toContain('/opt/wrenn/bin/tini');
  });

  it('cannot read host files outside its rootfs', async () => {
    const marker = `/tmp/wrenn-host-marker-${randomBytes(6).toString('hex')}`;
    await writeFile(marker, 'host only\n');
    try {
      const res = await sh(agent.client, a.id, `cat ${marker} 2>&1; ls /var/lib/wrenn 2>&1; echo done`);
      expect(res.stdout).not.toContain('host only');
      expect(res.stdout).toMatch(/No such file or directory[\s\S]*No such file or directory/);
    } finally {
      await rm(marker, { force: true });
    }
  });

  it('reaches its own envd but not the other’s envd, the agent, or any host service', async () => {
    const agentPort = new URL(agent.url).port;
    const hostIps = hostAddresses();
    expect(hostIps.length).toBeGreaterThan(0);
    // Positive controls, so "blocked" below means the firewall and not a broken probe:
    // the host reaches its own service on its addresses, and b's envd answers the host.
    const fromHost = await Promise.all(hostIps.map((ip) => canConnect(ip, hostServicePort)));
    expect(fromHost.every(Boolean)).toBe(true);
    const [bHost, bPort] = b.envd.split(':');
    expect(await canConnect(bHost!, Number(bPort))).toBe(true);

    const aSlotHostIp = a.envd.split(':')[0]!.replace(/\.(\d+)$/, (_, n: string) => `.${Number(n) - 1}`);
    const targets = [
      '127.0.0.1:49983', // its own envd
      b.envd,
      ...hostIps.flatMap((ip) => [`${ip}:${hostServicePort}`, `${ip}:${agentPort}`, `${ip}:5432`]),
      `${aSlotHostIp}:${hostServicePort}`,
      `${aSlotHostIp}:${agentPort}`,
      `169.254.0.22:${hostServicePort}`,
    ];
    const result = await probe(a.id, targets);
    expect(result['127.0.0.1:49983']).toBe('open');
    for (const t of targets.slice(1)) expect([t, result[t]]).toEqual([t, 'blocked']);
  });

  it('memory over its limit kills the process inside, not the sandbox, the host or its neighbours', async () => {
    const { sandbox } = await agent.client.createSandbox({ memoryMb: 256 });
    const id = sandbox!.id;
    try {
      // gVisor has no OOM killer of its own: the agent is the sandbox's (docs/gvisor.md), and the
      // host's limit, a headroom above, bounds what the sandbox can take from the host.
      const hog = "python3 -c 'x=[]\nwhile True: x.append(bytearray(32*1024*1024))'";
      const res = await sh(agent.client, id, hog, { timeoutMs: 120_000 });
      expect([137, -1]).toContain(res.exitCode);
      expect(res.timedOut).toBe(false);
      const { sandbox: after } = await agent.client.getSandbox({ sandboxId: id });
      expect(after!.status).toBe(hostagent.SandboxStatus.RUNNING);
      expect(after!.oomKills).toBe(1);
      // The sandbox, the host, the agent and the other sandboxes are unharmed.
      expect((await sh(agent.client, id, 'echo alive')).stdout).toBe('alive\n');
      expect((await sh(agent.client, a.id, 'echo alive')).stdout).toBe('alive\n');
      expect((await sh(agent.client, b.id, 'echo alive')).stdout).toBe('alive\n');
      expect(agent.child.exitCode).toBeNull();
    } finally {
      await agent.client.destroySandbox({ sandboxId: id });
    }
  });
});

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.setTimeout(2000);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
    s.connect(port, host);
  });
}
