import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenMetrics, listenMetricsAt, Registry, type MetricsListener } from '@wrenn/core/metrics';
import { startServer, type RunningServer } from '../server.js';
import { describeOnBackends, testBackends, testLogger, useTestServer } from '../testing/api.js';
import { withFakeHosts } from '../testing/fake-host.js';
import { ServerMetrics } from './server-metrics.js';

const backends = await testBackends();

/** The value of one series (`name{labels}` exactly as exported); undefined when absent. */
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};
const count = (text: string, method: string, route: string, status: string) =>
  sample(
    text,
    `wrenn_http_request_duration_seconds_count{method="${method}",route="${route}",status_class="${status}"}`,
  ) ?? 0;

// The control plane's metrics against a test server (fake hosts over mutual TLS behind it), scraped
// over HTTP as Prometheus would.
describeOnBackends('server metrics', backends, (backend) => {
  // Reads the database at scrape time, so it can be made before the test server opens it.
  const deps = {
    get db() {
      return api.db;
    },
    logger: testLogger,
    isLeader: () => true,
  };
  const metrics = new ServerMetrics(deps);
  const api = useTestServer(backend, { metrics });
  const { call, send, admin, user } = api;
  let listener: MetricsListener;
  beforeAll(async () => {
    listener = await listenMetrics({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      logger: testLogger,
    });
  });
  afterAll(() => listener.close());
  const scrape = async () => {
    const res = await fetch(listener.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return res.text();
  };

  it('answers in Prometheus text format with the named metrics', async () => {
    await call('GET', '/openapi.json');
    const text = await scrape();
    for (const [name, type] of [
      ['wrenn_http_request_duration_seconds', 'histogram'],
      ['wrenn_sandbox_operation_duration_seconds', 'histogram'],
      ['wrenn_sandboxes', 'gauge'],
      ['wrenn_hosts', 'gauge'],
      ['wrenn_host_heartbeat_age_seconds', 'gauge'],
      ['wrenn_host_heartbeats_total', 'counter'],
      ['wrenn_warm_pool_target', 'gauge'],
      ['wrenn_warm_pool_ready', 'gauge'],
      ['wrenn_build_queue_builds', 'gauge'],
      ['wrenn_server_leader', 'gauge'],
      ['process_resident_memory_bytes', 'gauge'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
      ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
    ])
      expect(text, name).toContain(`# TYPE ${name} ${type}\n`);
    expect(sample(text, 'wrenn_server_leader')).toBe(1);
    // Every sample line is `name{labels} value` (the text format's grammar, loosely; prom-client
    // writes NaN as `Nan`, which Prometheus reads, as it reads any case).
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#')))
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? ([-+0-9.eE]+|NaN|Nan|[+-]Inf)$/);
  });

  it("a request moves its route's histogram, labelled by the route pattern, never the path", async () => {
    const team = await user('metrics-routes@example.com');
    const before = await scrape();
    const missing = await call('GET', '/v1/sandboxes/nosuchsandbox123', { headers: team.key });
    expect(missing.status).toBe(404);
    await call('GET', '/v1/sandboxes/nosuchsandbox456', { headers: team.key });
    expect((await call('GET', '/v1/sandboxes', { headers: team.key })).status).toBe(200);
    expect((await call('GET', '/v1/sandboxes', {})).status).toBe(401);
    // E2B's routes are their own app, mounted: still their pattern.
    expect((await call('GET', '/sandboxes/nosuchsandbox789', { headers: team.key })).status).toBe(404);
    expect((await call('GET', '/no/such/route/abc')).status).toBe(404);
    const after = await scrape();
    const moved = (method: string, route: string, status: string) =>
      count(after, method, route, status) - count(before, method, route, status);
    expect(moved('GET', '/v1/sandboxes/:id', '4xx')).toBe(2);
    expect(moved('GET', '/v1/sandboxes', '2xx')).toBe(1);
    expect(moved('GET', '/v1/sandboxes', '4xx')).toBe(1);
    expect(moved('GET', '/sandboxes/:id', '4xx')).toBe(1);
    expect(moved('GET', 'unmatched', '4xx')).toBe(1);
    for (const raw of ['nosuchsandbox123', 'nosuchsandbox789', '/no/such/route'])
      expect(after).not.toContain(raw);
  });

  it('a create and a pause answer Server-Timing: where their time went, phase by phase (both APIs)', async () => {
    const root = await admin('timing-root@example.com');
    const team = await user('timing-team@example.com');
    await withFakeHosts(api, 1, root.auth, async () => {
      for (const [path, body] of [
        ['/v1/sandboxes', {}],
        ['/sandboxes', { templateID: 'base' }],
      ] as const) {
        const res = await send('POST', path, { body, headers: team.key });
        expect(res.status, await res.clone().text()).toBe(201);
        const phases = (res.headers.get('server-timing') ?? '').split(', ').map((p) => {
          const [name, dur] = p.split(';dur=');
          return { name, ms: Number(dur) };
        });
        expect(phases.map((p) => p.name)).toEqual([
          'template',
          'place',
          'insert',
          'copy',
          'agent',
          'update',
          'audit',
        ]);
        for (const { ms } of phases) expect(ms).toBeGreaterThanOrEqual(0);
        // And so does a pause.
        const id = (await res.json()) as { id?: string; sandboxID?: string };
        const paused = await send('POST', `${path}/${id.id ?? id.sandboxID}/pause`, { headers: team.key });
        expect(paused.status, await paused.clone().text()).toBe(path === '/sandboxes' ? 204 : 200);
        expect((paused.headers.get('server-timing') ?? '').split(', ').map((p) => p.split(';')[0])).toEqual([
          'lookup',
          'host',
          'agent',
          'update',
          'audit',
        ]);
      }
    });
  });

  it('sandboxes by state and host, sandbox operations, heartbeats and the build queue', async () => {
    const root = await admin('metrics-root@example.com');
    const team = await user('metrics-team@example.com');
    await withFakeHosts(api, 1, root.auth, async ([host]) => {
      const before = await scrape();
      const made = await call('POST', '/v1/sandboxes', { body: {}, headers: team.key });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      const id = made.body.id as string;
      let text = await scrape();
      expect(sample(text, `wrenn_sandboxes{state="running",host="${host!.id}"}`)).toBe(1);
      expect((await call('POST', `/v1/sandboxes/${id}/pause`, { headers: team.key })).status).toBe(200);
      expect((await call('POST', `/e2b-not-a-route/${id}`, { headers: team.key })).status).toBe(404);
      expect((await host!.heartbeat()).status).toBe(200);
      const build = await call('POST', '/v1/builds', {
        headers: team.key,
        body: { template: 'metrics-tools', recipe: ['RUN true'] },
      });
      expect(build.status, JSON.stringify(build.body)).toBe(202);
      text = await scrape();
      expect(sample(text, `wrenn_sandboxes{state="paused",host="${host!.id}"}`)).toBe(1);
      expect(sample(text, `wrenn_sandboxes{state="running",host="${host!.id}"}`)).toBeUndefined();
      const op = (t: string, operation: string) =>
        sample(t, `wrenn_sandbox_operation_duration_seconds_count{operation="${operation}",outcome="ok"}`) ??
        0;
      expect(op(text, 'create') - op(before, 'create')).toBe(1);
      expect(op(text, 'pause') - op(before, 'pause')).toBe(1);
      // withFakeHosts sent one heartbeat, this test one more.
      expect(sample(text, `wrenn_host_heartbeats_total{host="${host!.id}"}`)).toBe(2);
      const age = sample(text, `wrenn_host_heartbeat_age_seconds{host="${host!.id}"}`);
      expect(age).toBeGreaterThanOrEqual(0);
      expect(age).toBeLessThan(600);
      expect(sample(text, 'wrenn_hosts{status="online"}')).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'wrenn_build_queue_builds{state="queued"}')).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'wrenn_build_queue_builds{state="active"}')).toBe(0);
      expect((await call('DELETE', `/v1/sandboxes/${id}`, { headers: team.key })).status).toBe(204);
    });
  });

  it("an API request's X-Request-Id reaches the agent with every call it makes", async () => {
    const root = await admin('metrics-reqid-root@example.com');
    const team = await user('metrics-reqid@example.com');
    await withFakeHosts(api, 1, root.auth, async ([host]) => {
      const made = await call('POST', '/v1/sandboxes', {
        body: {},
        headers: { ...team.key, 'x-request-id': 'req-int-create-1' },
      });
      expect(made.status).toBe(201);
      const id = made.body.id as string;
      expect(host!.calls.filter((c) => c.method === 'CreateSandbox')).toEqual([
        { method: 'CreateSandbox', requestId: 'req-int-create-1' },
      ]);
      // Without one, the id the server made (and answered with) is the one the agent sees.
      const paused = await send('POST', `/v1/sandboxes/${id}/pause`, { headers: team.key });
      expect(paused.status).toBe(200);
      const given = paused.headers.get('x-request-id');
      expect(given).toMatch(/^[0-9a-f-]{36}$/);
      const pauses = host!.calls.filter((c) => c.method === 'PauseSandbox');
      expect(pauses).toEqual([{ method: 'PauseSandbox', requestId: given }]);
      // E2B's API too.
      const killed = await call('DELETE', `/sandboxes/${id}`, {
        headers: { ...team.key, 'x-request-id': 'req-int-kill-2' },
      });
      expect(killed.status).toBe(204);
      expect(host!.calls.filter((c) => c.method === 'DestroySandbox')).toEqual([
        { method: 'DestroySandbox', requestId: 'req-int-kill-2' },
      ]);
    });
  });
});

describe("the server's /metrics is not on the API's listener, and only where it is told to listen", () => {
  let dataDir: string;
  let server: RunningServer;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'wrenn-metrics-'));
    server = await startServer(
      {
        dataDir,
        listenHost: '0.0.0.0',
        listenPort: 0,
        metrics: { host: '127.0.0.1', port: 0, explicit: true },
        database: { kind: 'pglite', dir: 'memory://' },
        agentUrl: '',
        logLevel: 'warn',
      },
      testLogger,
    );
  }, 60_000);
  afterAll(async () => {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** An address of this machine's that is not loopback (the API listens on every address). */
  const outside = () => {
    const found = Object.values(os.networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal);
    expect(found, 'this test needs a non-loopback IPv4 address on the machine').toBeDefined();
    return found!.address;
  };
  const connects = (host: string, port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });

  it('answers on loopback, refuses from any other address, and the API has no /metrics', async () => {
    const url = new URL(server.metricsUrl!);
    expect(url.hostname).toBe('127.0.0.1');
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('# TYPE wrenn_http_request_duration_seconds histogram');
    const address = outside();
    // Positive control: the API itself is reachable there.
    const apiPort = Number(new URL(server.url).port);
    expect(await connects(address, apiPort)).toBe(true);
    expect(await connects(address, Number(url.port))).toBe(false);
    const onApi = await fetch(`http://${address}:${apiPort}/metrics`);
    expect(onApi.status).toBe(404);
    expect(await onApi.json()).toMatchObject({ code: 'not_found' });
  });

  it('a default address that is taken turns metrics off; one the operator set fails the start', async () => {
    const taken = new URL(server.metricsUrl!);
    const at = { host: '127.0.0.1', port: Number(taken.port) };
    const registry = new Registry();
    expect(await listenMetricsAt({ ...at, explicit: false }, registry, testLogger)).toBeUndefined();
    await expect(listenMetricsAt({ ...at, explicit: true }, registry, testLogger)).rejects.toThrow(
      /EADDRINUSE/,
    );
    expect(await listenMetricsAt(undefined, registry, testLogger)).toBeUndefined();
  });
});
