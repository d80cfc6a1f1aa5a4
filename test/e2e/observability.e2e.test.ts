import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { eventually } from './support/host-state.js';

// Observability end to end (docs/observability.md): the real agent (gVisor) behind the control plane.
// A request's X-Request-Id reaches the agent's log lines for the work it caused, and the agent's
// /metrics observes create, pause, resume and destroy with their outcome.

let agent: AgentProcess;
let cp: ControlPlane;
let metricsUrl: string;

beforeAll(async () => {
  agent = await startAgentProcess({ WRENN_AGENT_METRICS_LISTEN: '127.0.0.1:0' });
  cp = await startControlPlane(agent.url);
  // The agent names its metrics address in its 'host agent ready' line.
  await eventually(() => {
    const ready = logLines().find((l) => l.msg === 'host agent ready');
    expect(ready?.metrics, agent.logs()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    metricsUrl = ready!.metrics as string;
    return Promise.resolve();
  }, 10_000);
}, 120_000);

afterAll(async () => {
  await cp?.stop();
  await agent?.stop();
});

function logLines(): Record<string, unknown>[] {
  return agent
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const scrape = async () => {
  const res = await fetch(metricsUrl);
  expect(res.status).toBe(200);
  return res.text();
};
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};
const operations = (text: string, operation: string) =>
  sample(text, `wrenn_agent_sandbox_operation_duration_seconds_count{operation="${operation}",outcome="ok"}`);

describe('observability with a real agent', () => {
  it('request ids reach the agent’s log lines; create, pause, resume and destroy move their histograms', async () => {
    const key = await teamApiKey(cp.server.url, `obs-${randomUUID().slice(0, 8)}@example.com`);
    const ids = {
      create: `e2e-create-${randomUUID()}`,
      pause: `e2e-pause-${randomUUID()}`,
      resume: `e2e-resume-${randomUUID()}`,
      kill: `e2e-kill-${randomUUID()}`,
    };
    const api = async (method: string, path: string, requestId: string, body?: unknown) => {
      const res = await fetch(cp.server.url + path, {
        method,
        headers: { 'x-api-key': key, 'content-type': 'application/json', 'x-request-id': requestId },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(res.headers.get('x-request-id')).toBe(requestId);
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
    };
    const before = await scrape();
    const made = await api('POST', '/v1/sandboxes', ids.create, { timeout_sec: 0 });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const id = made.body.id as string;
    try {
      expect((await api('POST', `/v1/sandboxes/${id}/pause`, ids.pause)).status).toBe(200);
      const paused = await scrape();
      expect(sample(paused, 'wrenn_agent_sandboxes{state="paused"}')).toBe(1);
      expect(sample(paused, 'wrenn_agent_sandboxes{state="running"}')).toBe(0);
      expect((await api('POST', `/v1/sandboxes/${id}/resume`, ids.resume)).status).toBe(200);
      const resumed = await scrape();
      expect(sample(resumed, 'wrenn_agent_sandboxes{state="running"}')).toBe(1);
    } finally {
      expect((await api('DELETE', `/v1/sandboxes/${id}`, ids.kill)).status).toBe(204);
    }
    const after = await scrape();
    for (const operation of ['create', 'pause', 'resume', 'destroy'])
      expect(operations(after, operation) - operations(before, operation), operation).toBe(1);
    expect(sample(after, 'wrenn_agent_sandboxes{state="running"}')).toBe(0);
    expect(after).toContain('# TYPE process_resident_memory_bytes gauge');

    // Each request's own lines, on the agent, carry its id (the logger writes asynchronously).
    await eventually(() => {
      const lines = logLines();
      const by = (requestId: string) => lines.filter((l) => l.requestId === requestId);
      const messages = (requestId: string) => by(requestId).map((l) => l.msg);
      expect(messages(ids.create), agent.logs().slice(-4000)).toContain('sandbox created');
      expect(messages(ids.pause)).toContain('sandbox paused');
      expect(messages(ids.resume)).toContain('sandbox resumed');
      expect(messages(ids.kill)).toContain('sandbox resources released');
      for (const requestId of Object.values(ids))
        for (const line of by(requestId)) expect(line.sandboxId ?? id).toBe(id);
      // Lines of one request never carry another's id.
      const created = lines.find((l) => l.msg === 'sandbox created' && l.sandboxId === id);
      expect(created?.requestId).toBe(ids.create);
      return Promise.resolve();
    }, 10_000);
  });
});
