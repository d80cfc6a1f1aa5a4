import { rm } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { createClient, ConnectError } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { hostagent } from '@wrenn/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeControlPlane } from './support/fake-control-plane.js';
import {
  installDir,
  sh,
  sleep,
  startAgentProcess,
  type AgentClient,
  type AgentProcess,
} from './support/agent-process.js';
import { eventually } from './support/host-state.js';

const { SandboxStatus } = hostagent;

/** Starts a web server on `port` inside the sandbox, in the background. */
async function serveHttp(client: AgentClient, id: string, port: number): Promise<void> {
  await sh(
    client,
    id,
    `cd /tmp && echo tunnelled-page > index.html && nohup python3 -m http.server ${port} >/dev/null 2>&1 &`,
  );
}

/** CONNECT `<id>:<port>` on the session: the status, and with 200 what an HTTP/1.0 GET / returns. */
async function throughTunnel(session: http2.ClientHttp2Session, id: string, port: number) {
  const stream = session.request({ ':method': 'CONNECT', ':authority': `${id}:${port}` });
  const status = await new Promise<number>((resolve, reject) => {
    stream.once('response', (h) => resolve(Number(h[':status'])));
    stream.once('error', reject);
  });
  if (status !== 200) return { status, body: '' };
  stream.end('GET /index.html HTTP/1.0\r\nHost: sandbox\r\n\r\n');
  let body = '';
  for await (const chunk of stream) body += String(chunk);
  return { status, body };
}

function h2c(url: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('the sandbox tunnel on an unregistered agent (h2c, loopback)', () => {
  let agent: AgentProcess;
  beforeAll(async () => {
    agent = await startAgentProcess();
  });
  afterAll(() => agent?.stop());

  it('joins a CONNECT stream to a port inside a running sandbox; 404 once it is paused', async () => {
    const { sandbox } = await agent.client.createSandbox({ template: 'base' });
    const id = sandbox!.id;
    const session = await h2c(agent.url);
    try {
      await serveHttp(agent.client, id, 8000);
      await eventually(async () => {
        const { status, body } = await throughTunnel(session, id, 8000);
        expect(status).toBe(200);
        expect(body).toMatch(/^HTTP\/1\.0 200/);
        expect(body).toContain('tunnelled-page');
      }, 20_000);
      // Nothing listens on 8001: the agent says so before any byte flows.
      expect((await throughTunnel(session, id, 8001)).status).toBe(502);
      expect((await throughTunnel(session, 'nosuchsandbox1', 8000)).status).toBe(404);
      await agent.client.pauseSandbox({ sandboxId: id });
      expect((await throughTunnel(session, id, 8000)).status).toBe(404);
    } finally {
      session.destroy();
      await agent.client.destroySandbox({ sandboxId: id });
    }
  });
});

describe('a registered agent', () => {
  const dataDir = path.join(installDir, 'e2e-fleet');
  let cp: FakeControlPlane;
  let agent: AgentProcess | undefined;
  let port: number;
  const env = () => ({
    WRENN_DIR: dataDir,
    WRENN_CONTROL_PLANE_URL: cp.url,
    WRENN_AGENT_LISTEN: `127.0.0.1:${port}`,
    WRENN_HEARTBEAT_SEC: '1',
    WRENN_HEARTBEAT_GRACE: '2',
    WRENN_INSTANCE: 'e2ef',
    WRENN_SLOT_SUBNET: '10.14.0.0/16',
  });
  const onlyHost = () => [...cp.hosts.values()][0]!;
  const asControlPlane = { clientFor: () => cp.client(onlyHost().id), keepPaused: true };

  beforeAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
    cp = await FakeControlPlane.start();
    port = await freePort();
  });
  afterAll(async () => {
    await agent?.stop();
    await cp?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('registers, answers only the control plane over mutual TLS, tunnels, pauses all when cut off, and restarts without a token', async () => {
    agent = await startAgentProcess(
      { ...env(), WRENN_REGISTRATION_TOKEN: cp.registrationToken() },
      asControlPlane,
    );
    expect(agent.url).toBe(`https://127.0.0.1:${port}`);
    expect(cp.hosts.size).toBe(1);
    const host = onlyHost();
    expect(host.address).toBe(`127.0.0.1:${port}`);
    const client = agent.client;

    // Plain h2c gets nothing: the server speaks TLS and wants the control plane's certificate.
    const plain = createClient(
      hostagent.HostAgentService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: '2' }),
    );
    expect(
      await plain.listSandboxes({}).then(
        () => 'served',
        (e: unknown) => ConnectError.from(e).code,
      ),
    ).not.toBe('served');

    const { sandbox } = await client.createSandbox({ template: 'base', timeoutSec: 0 });
    const id = sandbox!.id;
    try {
      expect((await sh(client, id, 'echo registered')).stdout).toBe('registered\n');
      await eventually(() => {
        expect(host.heartbeats.at(-1)?.sandboxes).toEqual([{ id, status: 'running' }]);
        return Promise.resolve();
      }, 10_000);

      // Sandbox traffic through the agent, on the control plane's own TLS session.
      await serveHttp(client, id, 8000);
      const session = await cp.connect(host.id);
      try {
        await eventually(async () => {
          const { status, body } = await throughTunnel(session, id, 8000);
          expect(status).toBe(200);
          expect(body).toContain('tunnelled-page');
        }, 20_000);
      } finally {
        session.destroy();
      }

      // The control plane is gone: after two missed heartbeats the agent pauses its sandboxes.
      await cp.down();
      await eventually(async () => {
        expect((await client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(SandboxStatus.PAUSED);
      }, 30_000);
      await eventually(() => {
        expect(agent!.logs()).toContain('PauseAll');
        return Promise.resolve();
      });
      // Back: heartbeats go through again and report it paused by PauseAll, for the control plane
      // to resume (this fake one leaves that to the test).
      const before = host.heartbeats.length;
      await cp.up();
      await eventually(() => {
        expect(host.heartbeats.length).toBeGreaterThan(before);
        expect(host.heartbeats.at(-1)?.sandboxes).toEqual([
          { id, status: 'paused', paused_unsupervised: true },
        ]);
        return Promise.resolve();
      }, 10_000);
      expect(agent.logs()).toContain('the control plane answers again');
      await client.resumeSandbox({ sandboxId: id });
      expect((await sh(client, id, 'echo resumed')).stdout).toBe('resumed\n');
      // Running again, and it stays so while heartbeats go through.
      await sleep(3000);
      expect((await client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(SandboxStatus.RUNNING);
      await client.pauseSandbox({ sandboxId: id });

      // A restart needs no token; a token given anyway is ignored.
      await agent.stop();
      agent = await startAgentProcess(
        { ...env(), WRENN_REGISTRATION_TOKEN: 'not-a-valid-token' },
        asControlPlane,
      );
      expect(cp.hosts.size).toBe(1);
      expect(agent.logs()).toContain('WRENN_REGISTRATION_TOKEN ignored');
      expect((await agent.client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(SandboxStatus.PAUSED);
    } finally {
      await agent.client.destroySandbox({ sandboxId: id });
    }
  });

  it('an agent without credentials refuses to listen beyond loopback', async () => {
    const err = await startAgentProcess({
      WRENN_DIR: path.join(installDir, 'e2e-unregistered'),
      WRENN_AGENT_LISTEN: '0.0.0.0:0',
    }).then(
      () => 'started',
      (e: unknown) => String(e),
    );
    await rm(path.join(installDir, 'e2e-unregistered'), { recursive: true, force: true });
    expect(err).toMatch(/refusing to listen on 0\.0\.0\.0 without credentials.*Register this host/);
  });
});
