import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { silentLogger } from '@wrenn/core';
import { createSandboxProxy } from '../proxy/sandbox-proxy.js';
import { describeOnBackends, startTestServer, testBackends, useTestServer } from '../testing/api.js';
import { buildApp, serveApp } from './app.js';
import { TrustedProxies } from './client-address.js';

const backends = await testBackends();

describeOnBackends('forwarded headers', backends, (backend) => {
  const api = useTestServer(backend);

  const forged = {
    'x-forwarded-for': '203.0.113.7',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'evil.example',
  };

  async function auditedIp(server: { call: typeof api.call }, email: string): Promise<string | null> {
    const made = await server.call('POST', '/v1/auth/signup', {
      body: { email, password: 'correct horse battery' },
      headers: forged,
    });
    expect(made.status).toBe(201);
    const row = await api.db
      .selectFrom('audit_log')
      .select('ip')
      .where('action', '=', 'user.signup')
      .where('target', '=', (made.body.user as { id: string }).id)
      .executeTakeFirstOrThrow();
    return row.ip;
  }

  it('believes X-Forwarded-* only from a trusted proxy: the client address of the audit log and the limits', async () => {
    // By default nobody is trusted, not even loopback: the peer is the client.
    expect(await auditedIp(api, 'xff-untrusted@example.com')).toBe('127.0.0.1');
    const limitKeys = async () =>
      (await api.db.selectFrom('auth_rate_limits').select('key').execute()).map((r) => r.key);
    // The per-address limits count the peer, so a forged header does not escape them.
    expect(await limitKeys()).toContain('signupPerIp:127.0.0.1');
    expect(await limitKeys()).not.toContain('signupPerIp:203.0.113.7');
    const behindProxy = await startTestServer(api.db, {
      trustedProxies: new TrustedProxies(['127.0.0.0/8']),
    });
    try {
      expect(await auditedIp(behindProxy, 'xff-trusted@example.com')).toBe('203.0.113.7');
      expect(await limitKeys()).toContain('signupPerIp:203.0.113.7');
      // The nearest untrusted hop is the client, whatever a client put before it.
      const chain = await behindProxy.call('POST', '/v1/auth/signup', {
        body: { email: 'xff-chain@example.com', password: 'correct horse battery' },
        headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9, 127.0.0.2' },
      });
      const row = await api.db
        .selectFrom('audit_log')
        .select('ip')
        .where('target', '=', (chain.body.user as { id: string }).id)
        .executeTakeFirstOrThrow();
      expect(row.ip).toBe('203.0.113.9');
    } finally {
      await behindProxy.stop();
    }
    // Another proxy's range does not cover loopback: believed from nobody here.
    const elsewhere = await startTestServer(api.db, { trustedProxies: new TrustedProxies(['10.0.0.0/8']) });
    try {
      expect(await auditedIp(elsewhere, 'xff-elsewhere@example.com')).toBe('127.0.0.1');
    } finally {
      await elsewhere.stop();
    }
  });

  it('drops forwarded headers from untrusted clients before the sandbox proxy, keeps a trusted proxy’s', async () => {
    const seen: http.IncomingHttpHeaders[] = [];
    const sandbox = http.createServer((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    await new Promise<void>((r) => sandbox.listen(0, '127.0.0.1', r));
    const port = (sandbox.address() as AddressInfo).port;
    const proxy = createSandboxProxy({
      resolve: () => Promise.resolve({ kind: 'target', host: '127.0.0.1' }),
      activity: () => undefined,
      logger: silentLogger(),
    });
    const app = buildApp({
      db: api.db,
      tokens: api.tokens,
      hosts: api.fleet.directory,
      fleet: api.fleet,
      logger: silentLogger(),
      builds: {
        files: undefined as never,
        queue: { enqueue: () => Promise.resolve(), cancelRunning: () => undefined },
      },
    });
    const servers = [
      await serveApp(app, '127.0.0.1', 0, proxy),
      await serveApp(app, '127.0.0.1', 0, proxy, { trustedProxies: new TrustedProxies(['127.0.0.1']) }),
    ];
    try {
      for (const server of servers) {
        const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`, {
          headers: { 'e2b-sandbox-id': 'sbxheaders1', 'e2b-sandbox-port': String(port), ...forged },
        });
        expect(res.status).toBe(200);
      }
      const frontPort = (s: http.Server) => (s.address() as AddressInfo).port;
      expect(seen[0]).toMatchObject({
        'x-forwarded-for': '127.0.0.1',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': `127.0.0.1:${frontPort(servers[0] as http.Server)}`,
      });
      expect(seen[1]).toMatchObject({
        'x-forwarded-for': '203.0.113.7, 127.0.0.1',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'evil.example',
      });
    } finally {
      for (const server of servers) await new Promise((r) => server.close(r));
      await new Promise((r) => sandbox.close(r));
    }
  });

  it('refuses a trusted-proxy list it cannot read', () => {
    expect(() => new TrustedProxies(['10.0.0.0/33'])).toThrow(/bad prefix length/);
    expect(() => new TrustedProxies(['proxy.example'])).toThrow(/not an address or CIDR/);
    const list = new TrustedProxies(['10.1.0.0/16', '::1']);
    expect([
      list.has('10.1.2.3'),
      list.has('::ffff:10.1.2.3'),
      list.has('10.2.0.1'),
      list.has('::1'),
    ]).toEqual([true, true, false, true]);
  });
});
