import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createClient } from '@connectrpc/connect';
import { connectNodeAdapter, createConnectTransport } from '@connectrpc/connect-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '@wrenn/core';
import { listenMetrics, type MetricsListener } from '@wrenn/core/metrics';
import { hostagent } from '@wrenn/contracts';
import { AgentMetrics } from '../metrics/agent-metrics.js';
import { ImageImporter } from '../storage/image-importer.js';
import { BASE, fakeHost, type FakeHost } from '../testing/fakes.js';
import { callContext } from './call-context.js';
import { hostAgentService } from './host-agent-service.js';

// The agent's RPC server as agent.ts builds it (the call-context interceptor outermost), over a
// manager on fakes, served on a loopback port: request ids reach the log lines a call writes, and
// each call moves the metrics a real scrape reads.

let host: FakeHost;
let lines: Record<string, unknown>[];
let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let metricsListener: MetricsListener;
let client: ReturnType<typeof createClient<typeof hostagent.HostAgentService>>;

beforeEach(async () => {
  lines = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n'))
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = createLogger({ name: 'agent-test', level: 'info', destination: sink });
  host = await fakeHost(undefined, { logger });
  // The fake host's config has no request limits; validation needs them.
  const config = {
    ...host.manager.ctx.deps.config,
    limits: { maxVcpus: 4, maxMemoryMb: 8192, maxDiskMb: 65_536 },
  };
  const images = new ImageImporter({
    templates: host.templates,
    envdRuntime: { ensure: () => Promise.resolve('/fake/envd-runtime') },
    insecureRegistries: [],
    timeoutSec: 60,
    logger: silentLogger(),
  });
  const metrics = new AgentMetrics(host.manager);
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(
        hostagent.HostAgentService,
        hostAgentService(host.manager, host.templates, config, images),
      ),
    interceptors: [callContext(metrics)],
  });
  server = http2.createServer(handler);
  server.on('session', (session) => sessions.add(session));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  client = createClient(
    hostagent.HostAgentService,
    createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: '2' }),
  );
  metricsListener = await listenMetrics({ host: '127.0.0.1', port: 0, registry: metrics.registry, logger });
});

afterEach(async () => {
  await metricsListener.close();
  for (const session of sessions) session.destroy();
  sessions.clear();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await host.manager.destroyAll();
  await host.cleanup();
});

const scrape = async () => {
  const res = await fetch(metricsListener.url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
};

/** The value of one sample line, e.g. `name{a="b"}`; undefined when absent. */
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe("an agent call's request id", () => {
  it('is on every log line the call writes, and only on those', async () => {
    await client.createSandbox(
      { ...BASE, sandboxId: 'sbxreq01' },
      { headers: { 'x-request-id': 'req-create-1' } },
    );
    await client.pauseSandbox({ sandboxId: 'sbxreq01' }, { headers: { 'x-request-id': 'req-pause-2' } });
    await client.createSandbox({ ...BASE, sandboxId: 'sbxreq02' }); // no id: no field

    const created = lines.find((l) => l.msg === 'sandbox created' && l.sandboxId === 'sbxreq01');
    expect(created, JSON.stringify(lines)).toMatchObject({ requestId: 'req-create-1' });
    const paused = lines.filter((l) => l.requestId === 'req-pause-2');
    expect(paused.length, JSON.stringify(lines)).toBeGreaterThan(0);
    expect(paused.every((l) => l.sandboxId === 'sbxreq01')).toBe(true);
    const second = lines.find((l) => l.msg === 'sandbox created' && l.sandboxId === 'sbxreq02');
    expect(second).toBeDefined();
    expect(second).not.toHaveProperty('requestId');
  });

  it('a request id that is not sane (spaces, too long) is not logged', async () => {
    await client.createSandbox({ ...BASE, sandboxId: 'sbxreq03' }, { headers: { 'x-request-id': 'a b' } });
    await client.createSandbox(
      { ...BASE, sandboxId: 'sbxreq04' },
      { headers: { 'x-request-id': 'x'.repeat(129) } },
    );
    const created = lines.filter((l) => l.msg === 'sandbox created');
    expect(created).toHaveLength(2);
    for (const line of created) expect(line).not.toHaveProperty('requestId');
  });

  it('a streaming call is counted with its outcome when its stream ends', async () => {
    await client.createSandbox({ ...BASE, sandboxId: 'sbxreq05' });
    // A stream that fails inside the handler's generator, after the interceptor returned.
    const stream = client.execStream(
      { sandboxId: 'nosuchsandbox', command: { cmd: 'true' } },
      { headers: { 'x-request-id': 'req-stream-3' } },
    );
    await expect(
      (async () => {
        for await (const _ of stream) void _;
      })(),
    ).rejects.toMatchObject({ code: 5 });
    const text = await scrape();
    expect(sample(text, 'wrenn_agent_rpc_duration_seconds_count{method="ExecStream",code="not_found"}')).toBe(
      1,
    );
  });
});

describe("the agent's /metrics", () => {
  it('answers in Prometheus text format with the named metrics', async () => {
    const text = await scrape();
    for (const name of [
      'wrenn_agent_rpc_duration_seconds',
      'wrenn_agent_sandbox_operation_duration_seconds',
      'wrenn_agent_sandboxes',
      'wrenn_agent_warm_pool_target',
      'wrenn_agent_warm_pool_ready',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ])
      expect(text).toContain(`# TYPE ${name} `);
    expect(sample(text, 'wrenn_agent_sandboxes{state="running"}')).toBe(0);
    const other = await fetch(metricsListener.url.replace('/metrics', '/other'));
    expect(other.status).toBe(404);
  });

  it('create, pause, resume and a failed pause move their histograms; sandboxes by state follow', async () => {
    await client.createSandbox({ ...BASE, sandboxId: 'sbxmet01' });
    await client.pauseSandbox({ sandboxId: 'sbxmet01' });
    await expect(client.pauseSandbox({ sandboxId: 'nosuchsandbox' })).rejects.toMatchObject({ code: 5 });
    let text = await scrape();
    expect(sample(text, 'wrenn_agent_sandboxes{state="paused"}')).toBe(1);
    expect(sample(text, 'wrenn_agent_sandboxes{state="running"}')).toBe(0);
    await client.resumeSandbox({ sandboxId: 'sbxmet01' });
    await client.setWarmPool({ template: 'base', size: 1 });
    text = await scrape();
    const op = (operation: string, outcome: string) =>
      sample(
        text,
        `wrenn_agent_sandbox_operation_duration_seconds_count{operation="${operation}",outcome="${outcome}"}`,
      );
    expect(op('create', 'ok')).toBe(1);
    expect(op('pause', 'ok')).toBe(1);
    expect(op('pause', 'not_found')).toBe(1);
    expect(op('resume', 'ok')).toBe(1);
    expect(sample(text, 'wrenn_agent_sandboxes{state="running"}')).toBe(1);
    expect(sample(text, 'wrenn_agent_warm_pool_target{template="base"}')).toBe(1);
    expect(sample(text, 'wrenn_agent_rpc_duration_seconds_count{method="SetWarmPool",code="ok"}')).toBe(1);
    await client.setWarmPool({ template: 'base', size: 0 });
  });
});
