import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '@wrenn/core';
import {
  createCertificateAuthority,
  identityOf,
  issueCertificate,
  type CertificateAuthority,
} from '@wrenn/pki';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HeartbeatLoop } from '../services/heartbeat.js';
import { ControlPlaneClient, ControlPlaneRefusal } from './control-plane-client.js';
import { CredentialsStore } from './credentials-store.js';
import { Supervision } from './pause-all.js';
import { loadOrRegister, type RegistrationInput } from './registration.js';
import { HostSession } from './token-refresh.js';

/**
 * A control plane that speaks the host API of docs/fleet.md and nothing else: one registration
 * token, rotating refresh tokens, short-lived access tokens it can expire at will.
 */
class FakeControlPlane {
  server?: http.Server;
  url = '';
  registrationToken = 'reg-token';
  registrations: Record<string, unknown>[] = [];
  heartbeats: { token: string; body: Record<string, unknown> }[] = [];
  validAccess = new Set<string>();
  validRefresh = new Set<string>();
  refreshes = 0;
  revoked = false;
  private counter = 0;
  constructor(private readonly ca: CertificateAuthority) {}

  async start(port = 0): Promise<void> {
    const server = (this.server = http.createServer((req, res) => void this.handle(req, res)));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }

  private tokens() {
    const access = `access-${++this.counter}`;
    const refresh = `refresh-${this.counter}`;
    this.validAccess.add(access);
    this.validRefresh.add(refresh);
    return { access_token: access, refresh_token: refresh };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of req) text += String(chunk);
    const body = JSON.parse(text || '{}') as Record<string, string>;
    const send = (status: number, payload: object): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
    };
    const refuse = () => send(401, { code: 'unauthenticated', message: 'token refused' });
    switch (req.url ?? '') {
      case '/v1/hosts/register': {
        if (body.registration_token !== this.registrationToken) return refuse();
        this.registrationToken = 'spent';
        this.registrations.push(body);
        const certificate = await issueCertificate(this.ca, {
          publicKeyPem: body.public_key ?? '',
          identity: { kind: 'host', hostId: 'host-1' },
          days: 30,
        });
        return send(200, {
          host_id: 'host-1',
          ...this.tokens(),
          certificate,
          ca_certificate: this.ca.certPem,
          heartbeat_interval_sec: 30,
        });
      }
      case '/v1/hosts/refresh': {
        if (this.revoked || !this.validRefresh.delete(body.refresh_token ?? '')) return refuse();
        this.refreshes++;
        const certificate = await issueCertificate(this.ca, {
          publicKeyPem: String(this.registrations[0]?.public_key),
          identity: { kind: 'host', hostId: 'host-1' },
          days: 30,
        });
        return send(200, { ...this.tokens(), certificate });
      }
      case '/v1/hosts/heartbeat': {
        const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (!this.validAccess.has(token)) return refuse();
        this.heartbeats.push({ token, body });
        return send(200, { heartbeat_interval_sec: 30 });
      }
      default:
        return send(404, { code: 'not_found', message: 'no such route' });
    }
  }
}

/** Waits until `check` holds (the loops under test run on their own timers). */
async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${check.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const facts = { arch: 'x64', cpu_cores: 2, memory_mb: 4096, disk_mb: 20_000 };

describe('the agent and a control plane over HTTP', () => {
  let cp: FakeControlPlane;
  let dataDir: string;
  let ca: CertificateAuthority;
  const input = (over: Partial<RegistrationInput> = {}): RegistrationInput => ({
    controlPlaneUrl: cp.url,
    registrationToken: 'reg-token',
    address: '10.0.0.2:7070',
    agentVersion: '0.1.0',
    facts,
    ...over,
  });
  const client = (url: string) => new ControlPlaneClient(url, 2000);

  beforeEach(async () => {
    ca = await createCertificateAuthority();
    cp = new FakeControlPlane(ca);
    await cp.start();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'wrenn-fleet-'));
  });
  afterEach(async () => {
    await cp.stop().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('registers once with the token; a restart reuses the credentials and ignores a token', async () => {
    const store = CredentialsStore.in(dataDir);
    const creds = await loadOrRegister(input(), store, client, silentLogger());
    expect(cp.registrations).toHaveLength(1);
    expect(cp.registrations[0]).toMatchObject({ address: '10.0.0.2:7070', agent_version: '0.1.0', ...facts });
    expect(cp.registrations[0]?.public_key).toMatch(/BEGIN PUBLIC KEY/);
    expect(creds?.hostId).toBe('host-1');
    expect(identityOf(creds?.certPem ?? '')).toEqual({ kind: 'host', hostId: 'host-1' });
    // The private key stayed here.
    expect(JSON.stringify(cp.registrations)).not.toContain('PRIVATE KEY');

    const again = await loadOrRegister(
      input({ registrationToken: 'another' }),
      store,
      client,
      silentLogger(),
    );
    expect(again).toEqual(creds);
    expect(cp.registrations).toHaveLength(1);
    const noToken = await loadOrRegister(
      input({ registrationToken: undefined }),
      store,
      client,
      silentLogger(),
    );
    expect(noToken?.hostId).toBe('host-1');
  });

  it('is refused registration with a bad token, and stores nothing', async () => {
    const store = CredentialsStore.in(dataDir);
    const err = await loadOrRegister(
      input({ registrationToken: 'wrong' }),
      store,
      client,
      silentLogger(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlPlaneRefusal);
    expect(await store.load()).toBeUndefined();
  });

  it('needs a token to register, and runs unregistered with neither control plane nor token', async () => {
    const store = CredentialsStore.in(dataDir);
    await expect(
      loadOrRegister(input({ registrationToken: undefined }), store, client, silentLogger()),
    ).rejects.toThrow(/not registered yet.*WRENN_REGISTRATION_TOKEN/);
    expect(
      await loadOrRegister(
        input({ controlPlaneUrl: undefined, registrationToken: undefined }),
        store,
        client,
        silentLogger(),
      ),
    ).toBeUndefined();
  });

  it('heartbeats with capacity, load and sandboxes; a 401 refreshes and rotates the stored tokens', async () => {
    const store = CredentialsStore.in(dataDir);
    const creds = (await loadOrRegister(input(), store, client, silentLogger()))!;
    const renewedCerts: string[] = [];
    const api = client(cp.url);
    const session = new HostSession(creds, store, api, (m) => renewedCerts.push(m.certPem), silentLogger());
    const sandboxes = { list: () => [{ id: 'sbx1', status: 'running' }], pause: () => Promise.resolve() };
    const report = () =>
      Promise.resolve({
        capacity: { cpu_cores: 2, memory_mb: 4096, disk_mb: 20_000 },
        load: { cpu_pct: 1.5, memory_used_mb: 300, disk_used_mb: 40 },
        sandboxes: sandboxes.list(),
      });
    const loop = new HeartbeatLoop(
      { session, api, report, sandboxes, supervision: new Supervision(2), logger: silentLogger() },
      0.1,
    ).start();
    try {
      await until(() => cp.heartbeats.length >= 1);
      expect(cp.heartbeats[0]?.body).toEqual(await report());
      // The control plane stops taking the access token (expired): the agent refreshes and goes on.
      cp.validAccess.clear();
      const before = cp.heartbeats.length;
      await until(() => cp.heartbeats.length > before);
      expect(cp.refreshes).toBe(1);
      expect(cp.heartbeats.at(-1)?.token).toBe('access-2');
      expect(renewedCerts).toHaveLength(1);
      // What a restart finds: the rotated tokens and the renewed certificate.
      expect(await store.load()).toMatchObject({
        accessToken: 'access-2',
        refreshToken: 'refresh-2',
        certPem: renewedCerts[0],
      });
    } finally {
      await loop.stop();
    }
  });

  it('pauses every running sandbox when the control plane is gone for the grace, and carries on when it is back', async () => {
    const store = CredentialsStore.in(dataDir);
    const creds = (await loadOrRegister(input(), store, client, silentLogger()))!;
    const api = client(cp.url);
    const session = new HostSession(creds, store, api, () => undefined, silentLogger());
    const statuses = new Map([
      ['a', 'running'],
      ['b', 'running'],
    ]);
    const sandboxes = {
      list: () => [...statuses].map(([id, status]) => ({ id, status })),
      pause: (id: string) => Promise.resolve(statuses.set(id, 'paused')),
    };
    const report = () =>
      Promise.resolve({
        capacity: { cpu_cores: 2, memory_mb: 4096, disk_mb: 20_000 },
        load: { cpu_pct: 0, memory_used_mb: 0, disk_used_mb: 0 },
        sandboxes: sandboxes.list(),
      });
    const supervision = new Supervision(3);
    const loop = new HeartbeatLoop(
      { session, api, report, sandboxes, supervision, logger: silentLogger() },
      0.1,
    ).start();
    try {
      await until(() => cp.heartbeats.length >= 2);
      expect([...statuses.values()]).toEqual(['running', 'running']);
      const port = Number(new URL(cp.url).port);
      await cp.stop();
      await until(() => [...statuses.values()].every((s) => s === 'paused'));
      expect(supervision.isLost).toBe(true);
      // Back at the same address: heartbeats go through again (with the paused sandboxes in them).
      await cp.start(port);
      const before = cp.heartbeats.length;
      await until(() => cp.heartbeats.length > before);
      expect(supervision.isLost).toBe(false);
      expect(cp.heartbeats.at(-1)?.body.sandboxes).toEqual([
        { id: 'a', status: 'paused' },
        { id: 'b', status: 'paused' },
      ]);
    } finally {
      await loop.stop();
    }
  });

  it('counts a revoked host (refresh refused) as unsupervised: PauseAll', async () => {
    const store = CredentialsStore.in(dataDir);
    const creds = (await loadOrRegister(input(), store, client, silentLogger()))!;
    const api = client(cp.url);
    const session = new HostSession(creds, store, api, () => undefined, silentLogger());
    let status = 'running';
    const sandboxes = {
      list: () => [{ id: 'a', status }],
      pause: () => Promise.resolve((status = 'paused')),
    };
    const report = () =>
      Promise.resolve({
        capacity: { cpu_cores: 2, memory_mb: 4096, disk_mb: 20_000 },
        load: { cpu_pct: 0, memory_used_mb: 0, disk_used_mb: 0 },
        sandboxes: sandboxes.list(),
      });
    cp.revoked = true;
    cp.validAccess.clear();
    const loop = new HeartbeatLoop(
      { session, api, report, sandboxes, supervision: new Supervision(2), logger: silentLogger() },
      0.1,
    ).start();
    try {
      await until(() => status === 'paused');
      expect(cp.heartbeats).toEqual([]);
    } finally {
      await loop.stop();
    }
  });
});
