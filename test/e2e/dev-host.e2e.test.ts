import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostagent } from '@wrenn/contracts';
import { FakeControlPlane } from './support/fake-control-plane.js';
import { installDir, sh } from './support/agent-process.js';
import { devHost } from './support/fleet.js';
import { eventually } from './support/host-state.js';

const NAME = 'e2ed';
const hostDir = path.join(installDir, 'dev-hosts', NAME);

describe('a dev host (scripts/dev-host.sh): an agent in its own network namespace', () => {
  let cp: FakeControlPlane;
  let received: { from: string; text: string }[] = [];
  const listener = net.createServer((socket) => {
    socket.once('data', (b: Buffer) => {
      received.push({ from: socket.remoteAddress ?? '', text: b.toString() });
      socket.end('pong\n');
    });
  });
  const env = () => ({
    WRENN_URL: cp.url,
    WRENN_HEARTBEAT_SEC: '1',
    WRENN_HEARTBEAT_GRACE: '2',
    WRENN_SANDBOX_NAMESERVERS: '',
    // Its sandboxes may reach the root namespace here (only to prove the path through both NATs).
    WRENN_EGRESS_DENY: '169.254.0.0/16',
  });

  beforeAll(async () => {
    cp = await FakeControlPlane.start();
    await new Promise<void>((r) => listener.listen(0, '0.0.0.0', r));
    await devHost(['rm', NAME]).catch(() => undefined);
  });
  afterAll(async () => {
    // The test removes it on success; what a failed run left goes here.
    if (existsSync(hostDir)) await devHost(['rm', NAME]).catch((err: unknown) => console.error(err));
    await cp?.close();
    listener.close();
  });

  it('registers through a loopback control plane, runs sandboxes, pauses them when partitioned, and survives kill -9 with its paused ones', async () => {
    const started = await devHost(['start', NAME], {
      ...env(),
      WRENN_REGISTRATION_TOKEN: cp.registrationToken(),
    });
    const [, index] = /https:\/\/10\.98\.(\d+)\.2:7070/.exec(started) ?? [];
    expect(index).toBeDefined();
    expect(cp.hosts.size).toBe(1);
    const host = [...cp.hosts.values()][0]!;
    expect(host.address).toBe(`10.98.${index}.2:7070`);

    // The control plane reaches it through the veth, over mutual TLS.
    const client = cp.client(host.id);
    const { sandbox } = await client.createSandbox({ template: 'base' });
    const id = sandbox!.id;
    expect(sandbox!.envdAddress).toMatch(new RegExp(`^10\\.${100 + Number(index)}\\.`));
    expect((await sh(client, id, 'echo inside a dev host')).stdout).toBe('inside a dev host\n');
    // Named by the instance: the sandbox's, and the slots its agent built ahead.
    const slotNetns = (await readdir('/var/run/netns')).filter((n) => n.startsWith(`wrenn-${NAME}-`));
    expect(slotNetns.length).toBeGreaterThan(0);
    for (const name of slotNetns) expect(name).toMatch(new RegExp(`^wrenn-${NAME}-\\d+$`));

    // Out of the sandbox: slot netns → the dev host's netns (NATed to its address) → the root namespace.
    const port = (listener.address() as net.AddressInfo).port;
    const probe = await sh(
      client,
      id,
      `python3 -c "import socket; s=socket.create_connection(('10.98.${index}.1', ${port}), 5); s.sendall(b'ping'); print(s.recv(10).decode().strip())"`,
    );
    expect(probe.stdout).toBe('pong\n');
    expect(received).toEqual([{ from: `10.98.${index}.2`, text: 'ping' }]);
    await eventually(() => {
      expect(host.heartbeats.at(-1)?.sandboxes).toEqual([{ id, status: 'running' }]);
      return Promise.resolve();
    }, 10_000);

    // Cut off from the control plane, it pauses its sandbox on its own (PauseAll); healed, it
    // heartbeats again and reports the sandbox paused, by PauseAll (for the control plane to resume).
    await devHost(['partition', NAME]);
    await eventually(async () => {
      expect(await readFile(path.join(hostDir, 'agent.log'), 'utf8')).toContain('PauseAll');
    }, 30_000);
    const heartbeatsBefore = host.heartbeats.length;
    await devHost(['heal', NAME]);
    await eventually(() => {
      expect(host.heartbeats.length).toBeGreaterThan(heartbeatsBefore);
      expect(host.heartbeats.at(-1)?.sandboxes).toEqual([
        { id, status: 'paused', paused_unsupervised: true },
      ]);
      return Promise.resolve();
    }, 15_000);

    // kill -9, then a start without a token: the same host, its paused sandbox still there.
    await client.pauseSandbox({ sandboxId: id });
    await devHost(['kill', NAME]);
    await devHost(['start', NAME], env());
    expect(cp.hosts.size).toBe(1);
    const again = cp.client(host.id);
    expect((await again.getSandbox({ sandboxId: id })).sandbox?.status).toBe(hostagent.SandboxStatus.PAUSED);
    await again.resumeSandbox({ sandboxId: id });
    expect((await sh(again, id, 'echo back')).stdout).toBe('back\n');
    await again.destroySandbox({ sandboxId: id });
    expect(await readFile(path.join(hostDir, 'agent.log'), 'utf8')).toContain('host registered');

    await devHost(['rm', NAME]);
    expect(existsSync(hostDir)).toBe(false);
    expect((await readdir('/var/run/netns')).filter((n) => n.includes(NAME))).toEqual([]);
    received = [];
  });
});
