import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { hostagent } from '@wrenn/contracts';
import { sandboxTraffic } from '../services/sandbox-traffic.js';
import { describeOnBackends, testBackends, testLogger, useTestServer } from '../testing/api.js';
import { startFakeHost, type FakeHost } from '../testing/fake-host.js';
import { insertSandboxRow } from '../testing/rows.js';
import { createSandboxProxy, type SandboxProxy } from './sandbox-proxy.js';

// Sandbox traffic to a registered host goes through its agent: an HTTP/2 CONNECT stream on the
// agent's mutual-TLS session (a fake agent here, with the certificate it registered for), joined to
// a local HTTP server that plays the sandbox's port.

const backends = await testBackends();

describeOnBackends('the sandbox proxy through an agent tunnel', backends, (backend) => {
  const api = useTestServer(backend);
  let sandboxPort: http.Server;
  let wss: WebSocketServer;
  let proxyServer: http.Server;
  let proxy: SandboxProxy;
  let proxyUrl: string;
  let host: FakeHost;
  let teamId: string;

  beforeAll(async () => {
    // "Inside the sandbox": echoes method, path, Host and body; WebSockets echo too.
    sandboxPort = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            method: req.method,
            path: req.url,
            host: req.headers.host,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      });
    });
    wss = new WebSocketServer({ server: sandboxPort });
    wss.on('connection', (ws) => ws.on('message', (m: Buffer) => ws.send(`echo:${m.toString()}`)));
    await new Promise<void>((r) => sandboxPort.listen(0, '127.0.0.1', r));

    const root = await api.signup('tunnel-root@example.com');
    await api.db.updateTable('users').set({ is_admin: true }).where('id', '=', root.user.id).execute();
    teamId = root.team.id;
    host = await startFakeHost(api.call, {
      auth: { authorization: `Bearer ${root.token}` },
      tunnelTo: (sandboxPort.address() as AddressInfo).port,
    });

    proxy = createSandboxProxy(
      {
        ...sandboxTraffic({ db: api.db, hosts: api.fleet.directory, logger: testLogger }),
        logger: testLogger,
      },
      { cacheMs: 60_000 },
    );
    proxyServer = http.createServer((req, res) => {
      const to = proxy.route(req);
      if (to) proxy.handleRequest(req, res, to);
      else res.writeHead(404).end();
    });
    proxyServer.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
      const to = proxy.route(req);
      if (to) proxy.handleUpgrade(req, socket, head, to);
      else socket.destroy();
    });
    await new Promise<void>((r) => proxyServer.listen(0, '127.0.0.1', r));
    proxyUrl = `http://127.0.0.1:${(proxyServer.address() as AddressInfo).port}`;
  }, 60_000);

  afterAll(async () => {
    await new Promise((r) => proxyServer?.close(r));
    await host?.stop();
    wss?.close();
    await new Promise((r) => sandboxPort?.close(r));
  });

  const routed = (sandboxId: string, port = 8080) => ({
    'e2b-sandbox-id': sandboxId,
    'e2b-sandbox-port': String(port),
  });

  async function sandboxOnHost(id: string, status = hostagent.SandboxStatus.RUNNING) {
    host.sandboxes.set(id, status);
    await insertSandboxRow(api.db, { id, team_id: teamId, status: 'running', host_id: host.id });
  }

  it('carries requests both ways over one CONNECT stream, reused while kept alive', async () => {
    await sandboxOnHost('tunnelsbx01');
    const first = await fetch(`${proxyUrl}/hello?x=1`, { headers: routed('tunnelsbx01') });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({
      method: 'GET',
      path: '/hello?x=1',
      host: 'tunnelsbx01:8080',
      body: '',
    });
    const second = await fetch(`${proxyUrl}/upload`, {
      method: 'POST',
      body: 'some bytes',
      headers: routed('tunnelsbx01'),
    });
    expect(await second.json()).toMatchObject({ method: 'POST', path: '/upload', body: 'some bytes' });
    expect(host.tunnels).toEqual(['tunnelsbx01:8080']);
  });

  it('keeps a reused stream free of piling listeners (30 requests, one stream, no leak warning)', async () => {
    await sandboxOnHost('tunnelsbx04');
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 30; i++) {
        const res = await fetch(`${proxyUrl}/n${i}`, { headers: routed('tunnelsbx04') });
        expect(((await res.json()) as { path: string }).path).toBe(`/n${i}`);
      }
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(host.tunnels.filter((t) => t === 'tunnelsbx04:8080')).toHaveLength(1);
    expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
  });

  it('tunnels WebSocket upgrades on a stream of their own', async () => {
    await sandboxOnHost('tunnelsbx02');
    const before = host.tunnels.length;
    const ws = new WebSocket(`${proxyUrl.replace('http', 'ws')}/ws`, {
      headers: routed('tunnelsbx02', 3000),
    });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('ping'));
      ws.once('message', (m: Buffer) => resolve(m.toString()));
      ws.once('error', reject);
    });
    ws.close();
    expect(reply).toBe('echo:ping');
    expect(host.tunnels.slice(before)).toEqual(['tunnelsbx02:3000']);
  });

  it('answers 502 when the agent refuses the tunnel (the sandbox no longer runs there), and when it is gone', async () => {
    await sandboxOnHost('tunnelsbx03');
    expect((await fetch(`${proxyUrl}/`, { headers: routed('tunnelsbx03') })).status).toBe(200);
    // Still "running" in the proxy's cache, but the agent now says 404 to a new stream.
    host.sandboxes.set('tunnelsbx03', hostagent.SandboxStatus.PAUSED);
    const refused = await fetch(`${proxyUrl}/`, { headers: routed('tunnelsbx03', 9999) });
    expect(refused.status).toBe(502);
    expect(await refused.json()).toMatchObject({ sandboxId: 'tunnelsbx03', code: 502 });
    // Looked up again (the failure released it): paused without auto-resume is gone.
    const gone = await fetch(`${proxyUrl}/`, { headers: routed('tunnelsbx03') });
    expect(gone.status).toBe(502);
    expect(await gone.json()).toMatchObject({ message: 'The sandbox was not found' });
  });

  it('uses one TLS session per host for every sandbox (besides the Connect client’s own)', () => {
    expect(host.sessionCount).toBe(2);
  });
});
