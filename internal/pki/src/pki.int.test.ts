import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  agentServerTlsOptions,
  controlPlaneClientTlsOptions,
  createCertificateAuthority,
  generateKeyPair,
  identityOf,
  isIssuedBy,
  issueCertificate,
  peerIsControlPlane,
  type CertificateAuthority,
  type Identity,
  type TlsMaterial,
} from './index.js';

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;

async function material(authority: CertificateAuthority, identity: Identity): Promise<TlsMaterial> {
  const keys = await generateKeyPair();
  const certPem = await issueCertificate(authority, {
    publicKeyPem: keys.publicKeyPem,
    identity,
    addresses: ['127.0.0.1', 'agent.example'],
    days: 1,
  });
  return { keyPem: keys.privateKeyPem, certPem, caPem: authority.certPem };
}

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createCertificateAuthority(), createCertificateAuthority('other')]);
});

describe('certificates', () => {
  it('name one identity each, and chain to the CA that issued them only', async () => {
    const host = await material(ca, { kind: 'host', hostId: 'h-1' });
    const plane = await material(ca, { kind: 'control-plane' });
    expect(identityOf(host.certPem)).toEqual({ kind: 'host', hostId: 'h-1' });
    expect(identityOf(plane.certPem)).toEqual({ kind: 'control-plane' });
    expect(isIssuedBy(host.certPem, ca.certPem)).toBe(true);
    expect(isIssuedBy(host.certPem, otherCa.certPem)).toBe(false);
    expect(isIssuedBy(host.certPem, ca.certPem, new Date(Date.now() + 3 * 86_400_000))).toBe(false);
    expect(identityOf(ca.certPem)).toBeUndefined();
  });
});

describe('the mutual-TLS channel', () => {
  let server: http2.Http2SecureServer | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  /** An agent for host `h-1`: answers 200 to the control plane, drops every other peer. */
  async function agent(): Promise<string> {
    const tls = await material(ca, { kind: 'host', hostId: 'h-1' });
    server = http2.createSecureServer(agentServerTlsOptions(tls), (_req, res) => res.end('ok'));
    server.on('secureConnection', (socket: TLSSocket) => {
      if (!peerIsControlPlane(socket)) socket.destroy();
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  function call(url: string, client: TlsMaterial, hostId: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(url, controlPlaneClientTlsOptions(client, hostId));
      session.on('error', reject);
      const req = session.request({ ':path': '/' });
      let answered = false;
      let body = '';
      req.on('response', () => (answered = true));
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('close', () => {
        session.destroy();
        if (answered) resolve(body);
        else reject(new Error('the connection closed before an answer'));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('carries calls from the control plane to the host it names', async () => {
    const url = await agent();
    expect(await call(url, await material(ca, { kind: 'control-plane' }), 'h-1')).toBe('ok');
  });

  it('refuses another host, another CA, and an agent that is not the host meant', async () => {
    const url = await agent();
    await expect(call(url, await material(ca, { kind: 'host', hostId: 'h-2' }), 'h-1')).rejects.toThrow();
    await expect(call(url, await material(otherCa, { kind: 'control-plane' }), 'h-1')).rejects.toThrow();
    await expect(call(url, await material(ca, { kind: 'control-plane' }), 'h-9')).rejects.toThrow(
      /does not name host h-9/,
    );
  });
});
