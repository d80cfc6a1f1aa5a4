import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningServer } from '@wrenn/server';
import { createTestPostgres, describeOnBackends, postgresMissing } from '@wrenn/server/testing';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import {
  apiCall,
  rawUpload,
  startControlPlane,
  teamApiKey,
  wsExec,
  type ControlPlane,
} from './support/api-client.js';
import { eventually } from './support/host-state.js';

// The control plane over real HTTP, in front of a real agent with real gVisor sandboxes, on both
// database backends.
let agent: AgentProcess;
const UPLOAD_MAX = 8 * 1024 * 1024;
const pgTarget = await createTestPostgres();
const backends = [
  { name: 'PGlite', database: (dir: string) => ({ kind: 'pglite' as const, dir: path.join(dir, 'db') }) },
  'unavailable' in pgTarget
    ? { name: 'PostgreSQL', skip: pgTarget.unavailable, database: () => unreachable(pgTarget.unavailable) }
    : { name: 'PostgreSQL', database: () => ({ kind: 'postgres' as const, url: pgTarget.url }) },
];
if ('unavailable' in pgTarget) postgresMissing(pgTarget.unavailable);

function unreachable(reason: string): never {
  throw new Error(reason);
}

beforeAll(async () => {
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
  if (!('unavailable' in pgTarget)) await pgTarget.drop();
});

describeOnBackends('the API end to end', backends, ({ database }) => {
  let plane: ControlPlane;
  let server: RunningServer;

  beforeAll(async () => {
    plane = await startControlPlane(agent.url, { database, uploadMaxBytes: UPLOAD_MAX });
    server = plane.server;
  });

  afterAll(async () => {
    await plane?.stop();
  });

  const call = (method: string, url: string, opts: { body?: unknown; key?: string; bearer?: string } = {}) =>
    apiCall(server.url, method, url, opts);
  const teamKey = (email: string) => teamApiKey(server.url, email);

  it('create → exec → pause → resume → exec → delete, with an API key', async () => {
    const key = await teamKey(`life-${Date.now()}@example.com`);
    const created = await call('POST', '/v1/sandboxes', {
      key,
      body: { metadata: { purpose: 'e2e' }, timeout_sec: 0 },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ status: 'running', template: 'base', metadata: { purpose: 'e2e' } });
    const id = created.body.id as string;
    const exec = await call('POST', `/v1/sandboxes/${id}/exec`, {
      key,
      body: {
        cmd: 'echo $GREETING > /home/user/kept; cat /home/user/kept; echo err >&2; exit 3',
        env: { GREETING: 'hi' },
      },
    });
    expect(exec.body).toEqual({ exit_code: 3, stdout: 'hi\n', stderr: 'err\n', timed_out: false });
    // Files, streamed both ways: multipart and raw, binary intact.
    const blob = randomBytes(3 * 1024 * 1024);
    const form = new FormData();
    form.append('file', new Blob([blob]), 'blob.bin');
    const up = await fetch(`${server.url}/v1/sandboxes/${id}/files?path=/home/user/data/blob.bin`, {
      method: 'POST',
      headers: { 'x-api-key': key },
      body: form,
    });
    expect(up.status).toBe(200);
    expect(await up.json()).toEqual({ path: '/home/user/data/blob.bin', bytes: blob.length });
    const raw = await fetch(`${server.url}/v1/sandboxes/${id}/files?path=notes.txt`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
      body: 'hello\n',
    });
    expect(raw.status).toBe(200);
    const down = await fetch(`${server.url}/v1/sandboxes/${id}/files?path=/home/user/data/blob.bin`, {
      headers: { 'x-api-key': key },
    });
    expect(down.status).toBe(200);
    expect(Buffer.from(await down.arrayBuffer()).equals(blob)).toBe(true);
    const sums = await call('POST', `/v1/sandboxes/${id}/exec`, {
      key,
      body: { cmd: 'cat /home/user/notes.txt; sha256sum /home/user/data/blob.bin | cut -c1-64' },
    });
    expect(sums.body.stdout).toBe(`hello\n${createHash('sha256').update(blob).digest('hex')}\n`);
    const missing = await fetch(`${server.url}/v1/sandboxes/${id}/files?path=/nope`, {
      headers: { 'x-api-key': key },
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe('not_found');

    // Streaming exec over a WebSocket, with stdin.
    const session = await wsExec(`${server.url}/v1/sandboxes/${id}/exec/ws`, key, [
      { type: 'start', cmd: 'read a; echo "got $a"; cat; echo done >&2; exit 4' },
      { type: 'stdin', data: 'first line\n' },
      Buffer.from('binary rest'),
      { type: 'eof' },
    ]);
    expect(session.stdout).toBe('got first line\nbinary rest');
    expect(session.stderr).toBe('done\n');
    expect(session.exit).toMatchObject({ exit_code: 4, timed_out: false });
    expect(session.closeCode).toBe(1000);
    // On a terminal, with a resize the program sees.
    const tty = await wsExec(`${server.url}/v1/sandboxes/${id}/exec/ws`, key, [
      { type: 'start', cmd: '/bin/sh', pty: { cols: 80, rows: 24 } },
      { type: 'resize', cols: 120, rows: 40 },
      { type: 'stdin', data: 'stty size; exit 0\n' },
    ]);
    expect(tty.pty).toContain('40 120');
    expect(tty.exit).toMatchObject({ exit_code: 0 });
    // Closing the socket ends the command with it.
    const hangup = await wsExec(`${server.url}/v1/sandboxes/${id}/exec/ws`, key, [
      { type: 'start', cmd: 'sleep 777' },
      'close',
    ]);
    expect(hangup.exit).toBeUndefined();
    await eventually(async () => {
      const ps = await call('POST', `/v1/sandboxes/${id}/exec`, {
        key,
        body: { cmd: 'ps -eo args | grep -c "^sleep 777" || true' },
      });
      expect(ps.body.stdout).toBe('0\n');
    });

    await new Promise((r) => setTimeout(r, 1500));
    const live = await call('GET', `/v1/sandboxes/${id}/metrics?range=10m`, { key });
    expect(live.status).toBe(200);
    const livePoints = live.body.metrics as { mem_total_bytes: number }[];
    expect(livePoints.length).toBeGreaterThan(1);
    expect(livePoints[0]!.mem_total_bytes).toBe(512 * 1024 * 1024);
    expect((await call('GET', `/v1/sandboxes/${id}/metrics?range=1y`, { key })).status).toBe(400);
    expect((await call('POST', `/v1/sandboxes/${id}/pause`, { key })).body.status).toBe('paused');
    // Paused, the metrics come from the database.
    const stored = await call('GET', `/v1/sandboxes/${id}/metrics?range=10m`, { key });
    expect((stored.body.metrics as unknown[]).length).toBeGreaterThanOrEqual(livePoints.length);
    expect(
      ((await call('GET', `/v1/sandboxes/${id}/metrics?range=24h`, { key })).body.metrics as unknown[])
        .length,
    ).toBeGreaterThan(0);
    expect((await call('GET', '/v1/sandboxes?status=paused', { key })).body.sandboxes).toHaveLength(1);
    const busy = await call('POST', `/v1/sandboxes/${id}/exec`, { key, body: { cmd: 'true' } });
    expect(busy.status).toBe(409);
    expect((await call('POST', `/v1/sandboxes/${id}/resume`, { key })).body.status).toBe('running');
    expect(
      (await call('POST', `/v1/sandboxes/${id}/exec`, { key, body: { cmd: 'cat /home/user/kept' } })).body
        .stdout,
    ).toBe('hi\n');
    expect((await call('POST', `/v1/sandboxes/${id}/ping`, { key })).status).toBe(204);
    expect(
      (await call('PUT', `/v1/sandboxes/${id}/timeout`, { key, body: { timeout_sec: 600 } })).status,
    ).toBe(204);
    expect((await call('GET', `/v1/sandboxes/${id}`, { key })).body.timeout_sec).toBe(600);
    expect((await call('DELETE', `/v1/sandboxes/${id}`, { key })).status).toBe(204);
    expect((await call('GET', `/v1/sandboxes/${id}`, { key })).status).toBe(404);
    expect((await call('GET', `/v1/sandboxes/${id}/metrics`, { key })).status).toBe(404);
    expect((await agent.client.listSandboxes({})).sandboxes.map((s) => s.id)).not.toContain(id);
  });

  it("gives another team's key 404 for every sandbox endpoint, and changes nothing", async () => {
    const keyA = await teamKey(`a-${Date.now()}@example.com`);
    const keyB = await teamKey(`b-${Date.now()}@example.com`);
    const id = (await call('POST', '/v1/sandboxes', { key: keyA, body: {} })).body.id as string;
    try {
      const attempts: [string, string, unknown?][] = [
        ['GET', `/v1/sandboxes/${id}`],
        ['POST', `/v1/sandboxes/${id}/exec`, { cmd: 'touch /tmp/pwned' }],
        ['POST', `/v1/sandboxes/${id}/pause`],
        ['POST', `/v1/sandboxes/${id}/resume`],
        ['POST', `/v1/sandboxes/${id}/ping`],
        ['PUT', `/v1/sandboxes/${id}/timeout`, { timeout_sec: 1 }],
        ['GET', `/v1/sandboxes/${id}/metrics`],
        ['GET', `/v1/sandboxes/${id}/files?path=/etc/hostname`],
        ['POST', `/v1/sandboxes/${id}/files?path=/tmp/pwned`, 'x'],
        ['GET', `/v1/sandboxes/${id}/exec/ws`],
        ['DELETE', `/v1/sandboxes/${id}`],
      ];
      for (const [method, url, body] of attempts) {
        const res = await call(method, url, { key: keyB, body });
        expect(res.status, `${method} ${url}`).toBe(404);
        expect(res.body.code).toBe('not_found');
      }
      expect((await call('GET', '/v1/sandboxes', { key: keyB })).body.sandboxes).toEqual([]);
      const upgrade = await wsExec(`${server.url}/v1/sandboxes/${id}/exec/ws`, keyB, [
        { type: 'start', cmd: 'touch /tmp/pwned' },
      ]);
      expect(upgrade.rejectedWith).toBe(404);
      const mine = await call('GET', `/v1/sandboxes/${id}`, { key: keyA });
      expect(mine.body).toMatchObject({ status: 'running', timeout_sec: 300 });
      const probe = await call('POST', `/v1/sandboxes/${id}/exec`, {
        key: keyA,
        body: { cmd: 'test -e /tmp/pwned && echo yes || echo no' },
      });
      expect(probe.body.stdout).toBe('no\n');
    } finally {
      await call('DELETE', `/v1/sandboxes/${id}`, { key: keyA });
    }
  });

  it('snapshots a sandbox into a team template that only its team can see, use or delete', async () => {
    const keyA = await teamKey(`snap-a-${Date.now()}@example.com`);
    const keyB = await teamKey(`snap-b-${Date.now()}@example.com`);
    const source = (await call('POST', '/v1/sandboxes', { key: keyA, body: { timeout_sec: 0 } })).body
      .id as string;
    const made: string[] = [source];
    try {
      await call('POST', `/v1/sandboxes/${source}/exec`, {
        key: keyA,
        body: { cmd: 'echo prepared > /home/user/state' },
      });
      const snap = await call('POST', '/v1/snapshots', {
        key: keyA,
        body: { sandbox_id: source, name: 'ready' },
      });
      expect(snap.status).toBe(201);
      expect(snap.body).toMatchObject({ name: 'ready', source_sandbox_id: source, vcpus: 1, memory_mb: 512 });
      const snapId = snap.body.id as string;
      // The source keeps running; the name is the team's, once.
      expect((await call('GET', `/v1/sandboxes/${source}`, { key: keyA })).body.status).toBe('running');
      const again = await call('POST', '/v1/snapshots', {
        key: keyA,
        body: { sandbox_id: source, name: 'ready' },
      });
      expect(again.status).toBe(409);
      for (const name of ['../ready', 'Ready', '']) {
        const bad = await call('POST', '/v1/snapshots', { key: keyA, body: { sandbox_id: source, name } });
        expect(bad.status, name).toBe(400);
        expect(bad.body.message).toMatch(/^name: /);
      }

      // By name and by id, a new sandbox starts from the snapshot's state.
      for (const template of ['ready', snapId]) {
        const clone = await call('POST', '/v1/sandboxes', { key: keyA, body: { template } });
        expect(clone.status, template).toBe(201);
        expect(clone.body.template).toBe('ready');
        made.push(clone.body.id as string);
        const read = await call('POST', `/v1/sandboxes/${clone.body.id as string}/exec`, {
          key: keyA,
          body: { cmd: 'cat /home/user/state' },
        });
        expect(read.body.stdout).toBe('prepared\n');
      }
      const listed = await call('GET', '/v1/templates', { key: keyA });
      expect(listed.body.templates).toEqual(
        expect.arrayContaining([
          { name: 'base', kind: 'image', platform: true, id: null },
          { name: 'ready', kind: 'snapshot', platform: false, id: snapId },
        ]),
      );

      // Team B sees none of it, and cannot use, snapshot or delete it.
      const before = (await agent.client.listSandboxes({})).sandboxes.length;
      const attempts: [string, string, unknown?][] = [
        ['GET', `/v1/snapshots/${snapId}`],
        ['DELETE', `/v1/snapshots/${snapId}`],
        ['POST', '/v1/sandboxes', { template: 'ready' }],
        ['POST', '/v1/sandboxes', { template: snapId }],
        ['POST', '/v1/sandboxes', { template: `snap-${snapId}` }],
        ['POST', '/v1/snapshots', { sandbox_id: source, name: 'stolen' }],
      ];
      for (const [method, url, body] of attempts) {
        const res = await call(method, url, { key: keyB, body });
        expect(res.status, `${method} ${url} ${JSON.stringify(body)}`).toBe(404);
      }
      expect((await call('GET', '/v1/snapshots', { key: keyB })).body.snapshots).toEqual([]);
      expect(
        ((await call('GET', '/v1/templates', { key: keyB })).body.templates as { name: string }[]).map(
          (t) => t.name,
        ),
      ).not.toContain('ready');
      expect((await agent.client.listSandboxes({})).sandboxes.length).toBe(before);

      // Its sandboxes do not need it once they run: it and its files go, they carry on.
      expect((await call('DELETE', `/v1/snapshots/${snapId}`, { key: keyA })).status).toBe(204);
      const survivor = await call('POST', `/v1/sandboxes/${made[1]!}/exec`, {
        key: keyA,
        body: { cmd: 'cat /home/user/state' },
      });
      expect(survivor.body.stdout).toBe('prepared\n');
      expect((await call('POST', '/v1/sandboxes', { key: keyA, body: { template: 'ready' } })).status).toBe(
        404,
      );
      expect((await call('GET', `/v1/snapshots/${snapId}`, { key: keyA })).status).toBe(404);
      const agentTemplates = (await agent.client.listTemplates({})).templates.map((t) => t.name);
      expect(agentTemplates).not.toContain(`snap-${snapId}`);
    } finally {
      for (const id of made) await call('DELETE', `/v1/sandboxes/${id}`, { key: keyA });
    }
  });

  it('answers bad input with 400 naming the field, and creates nothing', async () => {
    const key = await teamKey(`bad-${Date.now()}@example.com`);
    const before = (await agent.client.listSandboxes({})).sandboxes.length;
    const cases: [unknown, RegExp][] = [
      [{ memory_mb: -1 }, /^memory_mb: /],
      [{ memory_mb: 10_000_000 }, /^memory_mb: /],
      [{ vcpus: 'two' }, /^vcpus: /],
      [{ template: '../etc' }, /^template: /],
      [{ colour: 'blue' }, /^body: .*colour/],
      [{ metadata: { k: 5 } }, /^metadata\.k: /],
    ];
    for (const [body, message] of cases) {
      const res = await call('POST', '/v1/sandboxes', { key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.message, JSON.stringify(body)).toMatch(message);
    }
    const id = (await call('POST', '/v1/sandboxes', { key, body: {} })).body.id as string;
    try {
      await call('POST', `/v1/sandboxes/${id}/exec`, { key, body: { cmd: 'echo original > /home/user/f' } });
      // Declared too large (2 GB): refused before a byte is read.
      const declared = await rawUpload(server.url, id, key, '/home/user/f', {
        declaredLength: 2 * 1024 ** 3,
        bytes: 64 * 1024,
      });
      expect(declared.status).toBe(413);
      expect(declared.body).toMatchObject({ code: 'payload_too_large' });
      // Chunked, no length: cut off once past the limit, and the target is as it was.
      const streamed = await rawUpload(server.url, id, key, '/home/user/f', {
        bytes: UPLOAD_MAX + 4 * 1024 * 1024,
      });
      expect(streamed.status).toBe(413);
      const after = await call('POST', `/v1/sandboxes/${id}/exec`, {
        key,
        body: { cmd: 'cat /home/user/f; ls -a /home/user | grep -c wrenn || true' },
      });
      expect(after.body, JSON.stringify(after)).toMatchObject({ stdout: 'original\n0\n' });
      for (const query of ['', '?path=', `?path=a%00b`, '?path=/x&user=Root']) {
        const res = await fetch(`${server.url}/v1/sandboxes/${id}/files${query}`, {
          headers: { 'x-api-key': key },
        });
        expect(res.status, query).toBe(400);
        expect(((await res.json()) as { message: string }).message, query).toMatch(/^(path|user): /);
      }
      const bad = await wsExec(`${server.url}/v1/sandboxes/${id}/exec/ws`, key, [{ type: 'start', cmd: '' }]);
      expect(bad.error).toMatchObject({ code: 'invalid_argument' });
      expect(bad.error?.message).toMatch(/^cmd: /);
      expect(bad.closeCode).toBe(1008);
    } finally {
      await call('DELETE', `/v1/sandboxes/${id}`, { key });
    }
    const missing = await call('POST', '/v1/sandboxes', { key, body: { template: 'no-such-template' } });
    expect(missing.status).toBe(404);
    expect((await agent.client.listSandboxes({})).sandboxes.length).toBe(before);
    expect((await call('GET', '/v1/sandboxes', { key })).body.sandboxes).toEqual([]);
  });
});
