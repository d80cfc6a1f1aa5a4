import { randomBytes } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { hostagent } from '@wrenn/contracts';
import {
  controlPlaneClientTlsOptions,
  createCertificateAuthority,
  generateKeyPair,
  issueCertificate,
  type CertificateAuthority,
  type TlsMaterial,
} from '@wrenn/pki';
import type { AgentClient } from './agent-process.js';

export interface FakeHost {
  id: string;
  address: string;
  publicKeyPem: string;
  heartbeats: { at: number; sandboxes: { id: string; status: string }[] }[];
}

/**
 * The host API of a control plane (docs/fleet.md: register, refresh, heartbeat) and its side of the
 * mutual-TLS channel to agents, for testing real agents without the real server. It can go away and
 * come back at the same address (an unreachable control plane).
 */
export class FakeControlPlane {
  readonly hosts = new Map<string, FakeHost>();
  private server?: http.Server;
  private port = 0;
  private readonly registrationTokens = new Set<string>();
  private readonly accessTokens = new Map<string, string>();
  private readonly refreshTokens = new Map<string, string>();
  private readonly sessions: Http2SessionManager[] = [];

  private constructor(
    readonly ca: CertificateAuthority,
    readonly material: TlsMaterial,
  ) {}

  static async start(): Promise<FakeControlPlane> {
    const ca = await createCertificateAuthority('fake cluster CA');
    const keys = await generateKeyPair();
    const certPem = await issueCertificate(ca, {
      publicKeyPem: keys.publicKeyPem,
      identity: { kind: 'control-plane' },
      days: 2,
    });
    const cp = new FakeControlPlane(ca, { keyPem: keys.privateKeyPem, certPem, caPem: ca.certPem });
    await cp.up();
    return cp;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  registrationToken(): string {
    const token = randomBytes(16).toString('hex');
    this.registrationTokens.add(token);
    return token;
  }

  async up(): Promise<void> {
    const server = (this.server = http.createServer((req, res) => void this.handle(req, res)));
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    this.port = (server.address() as AddressInfo).port;
  }

  /** Gone: connections refused until `up`. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.abort();
    await this.down();
  }

  /** A Connect client for the host's agent over mutual TLS, checking the agent is that host. */
  client(hostId: string): AgentClient {
    const host = this.hosts.get(hostId);
    if (!host) throw new Error(`unknown host ${hostId}`);
    const url = `https://${host.address}`;
    const sessions = new Http2SessionManager(url, {}, controlPlaneClientTlsOptions(this.material, hostId));
    this.sessions.push(sessions);
    return createClient(
      hostagent.HostAgentService,
      createConnectTransport({ baseUrl: url, httpVersion: '2', sessionManager: sessions }),
    );
  }

  /** An HTTP/2 session to the host's agent, as the proxy opens for tunnels. */
  connect(hostId: string): Promise<http2.ClientHttp2Session> {
    const host = this.hosts.get(hostId);
    if (!host) throw new Error(`unknown host ${hostId}`);
    return new Promise((resolve, reject) => {
      const session = http2.connect(
        `https://${host.address}`,
        controlPlaneClientTlsOptions(this.material, hostId),
      );
      session.once('connect', () => resolve(session));
      session.once('error', reject);
    });
  }

  private tokensFor(hostId: string) {
    const access = `${hostId}.${randomBytes(8).toString('hex')}`;
    const refresh = randomBytes(16).toString('hex');
    this.accessTokens.set(access, hostId);
    this.refreshTokens.set(refresh, hostId);
    return { access_token: access, refresh_token: refresh };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of req) text += String(chunk);
    const body = JSON.parse(text || '{}') as Record<string, unknown>;
    const send = (status: number, payload: object): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
    };
    const refuse = () => send(401, { code: 'unauthenticated', message: 'refused' });
    switch (req.url ?? '') {
      case '/v1/hosts/register': {
        if (!this.registrationTokens.delete(String(body.registration_token))) return refuse();
        const id = `host${this.hosts.size + 1}${randomBytes(3).toString('hex')}`;
        const host: FakeHost = {
          id,
          address: String(body.address),
          publicKeyPem: String(body.public_key),
          heartbeats: [],
        };
        this.hosts.set(id, host);
        return send(200, {
          host_id: id,
          ...this.tokensFor(id),
          certificate: await this.hostCertificate(host),
          ca_certificate: this.ca.certPem,
          heartbeat_interval_sec: 30,
        });
      }
      case '/v1/hosts/refresh': {
        const token = String(body.refresh_token);
        const hostId = this.refreshTokens.get(token);
        const host = hostId && this.hosts.get(hostId);
        if (!host) return refuse();
        this.refreshTokens.delete(token);
        return send(200, { ...this.tokensFor(host.id), certificate: await this.hostCertificate(host) });
      }
      case '/v1/hosts/heartbeat': {
        const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
        const host = this.hosts.get(this.accessTokens.get(token) ?? '');
        if (!host) return refuse();
        host.heartbeats.push({
          at: Date.now(),
          sandboxes: (body.sandboxes ?? []) as { id: string; status: string }[],
        });
        return send(200, { heartbeat_interval_sec: 30 });
      }
      default:
        return send(404, { code: 'not_found', message: 'no such route' });
    }
  }

  private hostCertificate(host: FakeHost): Promise<string> {
    return issueCertificate(this.ca, {
      publicKeyPem: host.publicKeyPem,
      identity: { kind: 'host', hostId: host.id },
      addresses: [host.address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')],
      days: 30,
    });
  }
}
