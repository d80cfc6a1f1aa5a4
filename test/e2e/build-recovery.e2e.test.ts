import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestPostgres, postgresMissing, type TestPostgres } from '@wrenn/server/testing';
import { startAgentProcess, testDataDir, type AgentProcess } from './support/agent-process.js';
import { apiCall, teamApiKey } from './support/api-client.js';
import { startServerReplica, type ServerReplica } from './support/fleet.js';
import { eventually, wrennHostState } from './support/host-state.js';

// The build queue across processes: two server replicas on one PostgreSQL share the worker limit
// and never run a build twice; a server killed mid-build leaves no build stuck and no sandbox behind.
let agent: AgentProcess;
let database: TestPostgres;
const replicas: ServerReplica[] = [];

const target = await createTestPostgres();
if ('unavailable' in target) postgresMissing(target.unavailable);

beforeAll(async () => {
  if ('unavailable' in target) throw new Error(target.unavailable);
  database = target;
  agent = await startAgentProcess();
}, 120_000);

afterAll(async () => {
  for (const r of replicas) await r.kill();
  await agent?.stop();
  await database?.drop();
});

async function replica(name: string): Promise<ServerReplica> {
  const r = await startServerReplica(name, {
    DATABASE_URL: database.url,
    WRENN_AGENT_URL: agent.url,
    WRENN_BUILD_WORKERS: '2',
    LOG_LEVEL: 'warn',
  });
  replicas.push(r);
  return r;
}

type Build = { id: string; status: string; reason: { message: string } | null };

async function buildRows(ids: string[]) {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{
      id: string;
      status: string;
      attempts: number;
      sandbox_id: string | null;
    }>('select id, status, attempts, sandbox_id from template_builds where id = any($1)', [ids]);
    return rows;
  } finally {
    await client.end();
  }
}

async function runStarts(ids: string[]) {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ build_id: string; n: string }>(
      `select build_id, count(*) as n from template_build_logs where build_id = any($1) and message like '[1/%' group by build_id`,
      [ids],
    );
    return new Map(rows.map((r) => [r.build_id, Number(r.n)]));
  } finally {
    await client.end();
  }
}

describe('template builds across server processes (PostgreSQL, real gVisor)', () => {
  it('two replicas: at most two builds run at once in all, each exactly once', async () => {
    const [a, b] = await Promise.all([replica('a'), replica('b')]);
    const key = await teamApiKey(a.url, 'replicas@example.com');
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      // Half through each replica: both take jobs from the one queue.
      const res = await apiCall(n % 2 ? b.url : a.url, 'POST', '/v1/builds', {
        key,
        body: { template: `shared${n}`, recipe: [`RUN sleep 4 # ${n}`], kind: 'image' },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      ids.push(res.body.id as string);
    }
    let most = 0;
    for (;;) {
      const rows = await buildRows(ids);
      most = Math.max(most, rows.filter((r) => r.status === 'building').length);
      if (rows.every((r) => ['ready', 'error', 'cancelled'].includes(r.status))) {
        expect(rows.map((r) => r.status)).toEqual(ids.map(() => 'ready'));
        expect(rows.map((r) => r.attempts)).toEqual(ids.map(() => 1));
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(most).toBe(2);
    const starts = await runStarts(ids);
    expect(ids.map((id) => starts.get(id))).toEqual(ids.map(() => 1));
    await a.kill();
    await b.kill();
  });

  it('a server killed mid-build: the build is run again by the next server and its first sandbox destroyed', async () => {
    const first = await replica('first');
    const key = await teamApiKey(first.url, 'recovery@example.com');
    const res = await apiCall(first.url, 'POST', '/v1/builds', {
      key,
      body: {
        template: 'survivor',
        recipe: ['RUN sleep 6', 'USER root', 'RUN echo survived > /etc/survived'],
      },
    });
    const id = res.body.id as string;
    let firstSandbox: string | null = null;
    await eventually(async () => {
      const [row] = await buildRows([id]);
      expect(row?.status).toBe('building');
      expect(row?.sandbox_id).toBeTruthy();
      firstSandbox = row!.sandbox_id;
    }, 60_000);
    await first.kill();

    const second = await replica('second');
    let build: Build | undefined;
    for (;;) {
      const got = await apiCall(second.url, 'GET', `/v1/builds/${id}`, { key });
      build = got.body as unknown as Build;
      if (['ready', 'error', 'cancelled'].includes(build.status)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(build.status, JSON.stringify(build)).toBe('ready');
    const [row] = await buildRows([id]);
    expect(
      row?.attempts,
      JSON.stringify(await apiCall(second.url, 'GET', `/v1/builds/${id}/logs`, { key })),
    ).toBe(2);
    const logs = await apiCall(second.url, 'GET', `/v1/builds/${id}/logs`, { key });
    const messages = (logs.body.logs as { message: string }[]).map((l) => l.message);
    expect(messages.some((m) => m.includes('the server running this build stopped'))).toBe(true);
    // The interrupted attempt's sandbox is gone from the agent, and nothing else is left running.
    const listed = await agent.client.listSandboxes({});
    expect(listed.sandboxes.map((s) => s.id)).not.toContain(firstSandbox);
    await eventually(async () => {
      const state = await wrennHostState(testDataDir);
      expect(state.runscProcesses).toEqual([]);
    }, 15_000);
    const created = await apiCall(second.url, 'POST', '/v1/sandboxes', {
      key,
      body: { template: 'survivor' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const out = await apiCall(second.url, 'POST', `/v1/sandboxes/${created.body.id as string}/exec`, {
      key,
      body: { cmd: 'cat /etc/survived' },
    });
    expect(out.body.stdout).toBe('survived\n');
    await apiCall(second.url, 'DELETE', `/v1/sandboxes/${created.body.id as string}`, { key });
  });
});
