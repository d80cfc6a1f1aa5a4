import http2, { type ClientHttp2Session } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { silentLogger } from '@wrenn/core';
import {
  controlPlaneClientTlsOptions,
  createCertificateAuthority,
  generateKeyPair,
  issueCertificate,
  type CertificateAuthority,
  type Identity,
  type TlsMaterial,
} from '@wrenn/pki';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listenAgentServer, type AgentServer } from './agent-server.js';
import type { TunnelTarget, TunnelTargets } from './sandbox-tunnel.js';

async function material(ca: CertificateAuthority, identity: Identity): Promise<TlsMaterial> {
  const keys = await generateKeyPair();
  const certPem = await issueCertificate(ca, {
    publicKeyPem: keys.publicKeyPem,
    identity,
    addresses: ['127.0.0.1'],
    days: 30,
  });
  return { keyPem: keys.privateKeyPem, certPem, caPem: ca.certPem };
}

/** Sandboxes as the tunnel sees them: one running (its "slot" a local echo server), the rest not. */
class FakeSandboxes implements TunnelTargets {
  open = 0;
  lifetime = new AbortController();
  tunnelTarget(id: string): TunnelTarget {
    if (id !== 'sbxrunning1') throw new Error(`sandbox ${id} not found`);
    this.open++;
    return { host: '127.0.0.1', stopped: this.lifetime.signal, done: () => void this.open-- };
  }
}

function connect(url: string, tls: object): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, tls);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

/** GET / on the session: the status and body, or the error the stream or session died with. */
function get(session: ClientHttp2Session): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': '/' });
    let body = '';
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (b: Buffer) => (body += b.toString()));
    // Under TLS 1.3 a client the server refuses has already "connected": it learns of the refusal
    // when the connection closes without an answer.
    req.on('end', () => (status ? resolve({ status, body }) : reject(new Error('no answer'))));
    req.on('error', reject);
    session.once('error', reject);
    session.once('close', () => reject(new Error('session closed')));
  });
}

function tunnel(session: ClientHttp2Session, authority: string) {
  const stream = session.request({ ':method': 'CONNECT', ':authority': authority });
  const status = new Promise<number>((resolve, reject) => {
    stream.once('response', (h) => resolve(Number(h[':status'])));
    stream.once('error', reject);
  });
  return { stream, status };
}

function closed(stream: http2.ClientHttp2Stream): Promise<void> {
  return new Promise((r) => (stream.closed ? r() : stream.once('close', () => r())));
}

describe('the agent server with credentials (mutual TLS)', () => {
  let ca: CertificateAuthority;
  let hostTls: TlsMaterial;
  let controlPlaneTls: TlsMaterial;
  let server: AgentServer;
  let sandboxes: FakeSandboxes;
  let echo: net.Server;
  let echoPort: number;
  const sessions: ClientHttp2Session[] = [];
  const asControlPlane = async () => {
    const s = await connect(server.url, controlPlaneClientTlsOptions(controlPlaneTls, 'host-1'));
    sessions.push(s);
    return s;
  };

  beforeAll(async () => {
    ca = await createCertificateAuthority();
    hostTls = await material(ca, { kind: 'host', hostId: 'host-1' });
    controlPlaneTls = await material(ca, { kind: 'control-plane' });
    echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => echo.close(() => r())));

  beforeAll(async () => {
    sandboxes = new FakeSandboxes();
    server = await listenAgentServer({
      host: '127.0.0.1',
      port: 0,
      handler: (_req, res) => res.end('rpc answered'),
      tunnels: sandboxes,
      tls: hostTls,
      logger: silentLogger(),
    });
  });
  afterAll(() => server.close());
  afterEach(() => {
    for (const s of sessions.splice(0)) s.destroy();
  });

  it('serves the control plane', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await get(await asControlPlane())).toEqual({ status: 200, body: 'rpc answered' });
  });

  it('drops another host of the same cluster before it is served', async () => {
    const otherHost = await material(ca, { kind: 'host', hostId: 'host-2' });
    const outcome = await connect(server.url, controlPlaneClientTlsOptions(otherHost, 'host-1'))
      .then((s) => (sessions.push(s), get(s)))
      .then(
        (r) => `served ${r.status}`,
        (err: unknown) => `refused: ${String(err)}`,
      );
    expect(outcome).toMatch(/^refused/);
  });

  it('refuses a client without a certificate, or with one from another CA, at the handshake', async () => {
    const noCert = await connect(server.url, { ca: ca.certPem, checkServerIdentity: () => undefined })
      .then((s) => (sessions.push(s), get(s)))
      .then(
        () => 'served',
        () => 'refused',
      );
    expect(noCert).toBe('refused');
    const otherCa = await createCertificateAuthority('another cluster');
    const stranger = await material(otherCa, { kind: 'control-plane' });
    const strangerOutcome = await connect(server.url, {
      ...controlPlaneClientTlsOptions(stranger, 'host-1'),
      ca: ca.certPem,
    })
      .then((s) => (sessions.push(s), get(s)))
      .then(
        () => 'served',
        () => 'refused',
      );
    expect(strangerOutcome).toBe('refused');
  });

  it('tunnels a CONNECT to a running sandbox’s port, both ways, counted as activity while open', async () => {
    const session = await asControlPlane();
    const { stream, status } = tunnel(session, `sbxrunning1:${echoPort}`);
    expect(await status).toBe(200);
    expect(sandboxes.open).toBe(1);
    stream.write('hello through the agent');
    const echoed = await new Promise<string>((r) => stream.once('data', (b: Buffer) => r(b.toString())));
    expect(echoed).toBe('hello through the agent');
    stream.end();
    await closed(stream);
    await until(() => sandboxes.open === 0);
    // The session carries on: Connect RPC on the same connection.
    expect((await get(session)).status).toBe(200);
  });

  it('answers 404 for a sandbox not running here, 400 for a malformed authority, 502 for a closed port', async () => {
    const session = await asControlPlane();
    expect(await tunnel(session, `sbxunknown1:${echoPort}`).status).toBe(404);
    for (const bad of [
      'sbxrunning1',
      'sbxrunning1:0',
      'sbxrunning1:70000',
      'NOTANID1:80',
      'sbx:80',
      'sbxrunning1:x',
    ])
      expect(await tunnel(session, bad).status, bad).toBe(400);
    const unused = net.createServer();
    await new Promise<void>((r) => unused.listen(0, '127.0.0.1', r));
    const closedPort = (unused.address() as AddressInfo).port;
    await new Promise<void>((r) => unused.close(() => r()));
    expect(await tunnel(session, `sbxrunning1:${closedPort}`).status).toBe(502);
    await until(() => sandboxes.open === 0);
  });

  it('closes a tunnel when its sandbox stops running (pause, destroy)', async () => {
    const session = await asControlPlane();
    const { stream, status } = tunnel(session, `sbxrunning1:${echoPort}`);
    expect(await status).toBe(200);
    sandboxes.lifetime.abort();
    await closed(stream);
    await until(() => sandboxes.open === 0);
    sandboxes.lifetime = new AbortController();
  });

  it('presents a renewed certificate to connections made after it is put in place', async () => {
    const serial = async () => {
      const s = await asControlPlane();
      return (s.socket as TLSSocket).getPeerCertificate().serialNumber;
    };
    const before = await serial();
    const renewed = await material(ca, { kind: 'host', hostId: 'host-1' });
    server.setTlsMaterial(renewed);
    const after = await serial();
    expect(after).not.toBe(before);
    expect(after.toLowerCase()).toBe(
      new (await import('node:crypto')).X509Certificate(renewed.certPem).serialNumber.toLowerCase(),
    );
  });
});

describe('the agent server without credentials', () => {
  it('speaks h2c, with the tunnel too', async () => {
    const server = await listenAgentServer({
      host: '127.0.0.1',
      port: 0,
      handler: (_req, res) => res.end('h2c'),
      tunnels: new FakeSandboxes(),
      tls: undefined,
      logger: silentLogger(),
    });
    try {
      expect(server.url).toMatch(/^http:\/\//);
      const session = await connect(server.url, {});
      try {
        expect(await get(session)).toEqual({ status: 200, body: 'h2c' });
        expect(await tunnel(session, 'sbxunknown1:80').status).toBe(404);
      } finally {
        session.destroy();
      }
      expect(() => server.setTlsMaterial({ keyPem: '', certPem: '', caPem: '' })).toThrow(/h2c/);
    } finally {
      await server.close();
    }
  });
});

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${check.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
