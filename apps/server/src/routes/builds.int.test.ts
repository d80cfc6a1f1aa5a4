import { createHash } from 'node:crypto';
import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';

// The build API's records, validation and ownership (builds stay queued here; they run in the e2e
// tests, on real agents).
const backends = await testBackends();

describeOnBackends('the template build API', backends, (backend) => {
  const api = useTestServer(backend);
  const { call, user, admin, send } = api;

  it('queues a recipe build, shows it with its progress and log, and cancels it while it waits', async () => {
    const team = await user('builds-a@example.com');
    const res = await call('POST', '/v1/builds', {
      headers: team.key,
      body: {
        template: 'tools',
        recipe: ['RUN apt-get install -y jq', 'ENV A=1 B=2', 'WORKDIR /app', 'echo plain'],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body).toMatchObject({
      template: 'tools',
      status: 'waiting',
      kind: 'snapshot',
      vcpus: 2,
      memory_mb: 1024,
      disk_mb: 4096,
      progress: { steps: 4, done: 0, cached: 0, current: null },
      from: { template: 'base' },
      reason: null,
    });
    const id = res.body.id as string;
    expect((await call('GET', `/v1/builds/${id}`, { headers: team.key })).body.status).toBe('waiting');
    const list = await call('GET', '/v1/builds', { headers: team.key });
    expect((list.body.builds as { id: string }[]).map((b) => b.id)).toEqual([id]);
    const logs = await call('GET', `/v1/builds/${id}/logs`, { headers: team.key });
    expect(logs.body).toMatchObject({
      logs: [{ level: 'info', message: 'queued', step: null }],
      next_offset: 1,
    });
    const cancelled = await call('POST', `/v1/builds/${id}/cancel`, { headers: team.key });
    expect(cancelled.body.status).toBe('cancelled');
    // Once ended, a second cancel is refused, naming why.
    expect(await call('POST', `/v1/builds/${id}/cancel`, { headers: team.key })).toEqual({
      status: 409,
      body: { code: 'failed_precondition', message: `build ${id} already ended (cancelled)` },
    });
    // A built template with no ready build cannot start sandboxes yet.
    const sandbox = await call('POST', '/v1/sandboxes', { headers: team.key, body: { template: 'tools' } });
    expect(sandbox.status).toBe(409);
    expect(sandbox.body.message).toMatch(/no ready build/);
  });

  it("refuses bad input naming the field, and hides one team's builds from another", async () => {
    const a = await user('builds-b@example.com');
    const b = await user('builds-c@example.com');
    const bad = async (body: unknown) => call('POST', '/v1/builds', { headers: a.key, body });
    expect((await bad({ recipe: [] })).body.message).toMatch(/^template:/);
    expect((await bad({ template: 'Bad Name', recipe: [] })).body.message).toMatch(/^template:/);
    expect((await bad({ template: 'x', recipe: ['ENV novalue'] })).body).toEqual({
      code: 'invalid_argument',
      message: 'recipe[0]: ENV takes KEY=VALUE pairs, got "novalue"',
    });
    expect((await bad({ template: 'x', recipe: ['RUN true', 'COPY a b'] })).body.message).toBe(
      'recipe[1]: COPY needs the build to name an uploaded context (context_hash)',
    );
    const hash = 'a'.repeat(64);
    expect((await bad({ template: 'x', recipe: ['COPY a b'], context_hash: hash })).body.message).toBe(
      `context_hash: no files uploaded under ${hash}`,
    );
    expect((await bad({ template: 'x', recipe: [], kind: 'vm' })).body.message).toMatch(/^kind:/);
    expect((await bad({ template: 'x', recipe: [], memory_mb: 1 })).body.message).toMatch(/^memory_mb:/);
    expect((await bad({ template: 'x', recipe: [], extra: 1 })).body.message).toMatch(/extra/);

    const mine = await call('POST', '/v1/builds', {
      headers: a.key,
      body: { template: 'mine', recipe: ['true'] },
    });
    const id = mine.body.id as string;
    for (const [method, path] of [
      ['GET', `/v1/builds/${id}`],
      ['GET', `/v1/builds/${id}/logs`],
      ['POST', `/v1/builds/${id}/cancel`],
    ] as const)
      expect((await call(method, path, { headers: b.key })).status, path).toBe(404);
    expect((await call('GET', '/v1/builds', { headers: b.key })).body.builds).toEqual([]);
    expect((await call('GET', '/v1/builds/not-a-uuid', { headers: a.key })).status).toBe(400);
  });

  it('stores a context under its SHA-256 (a wrong hash refused), per team', async () => {
    const a = await user('builds-d@example.com');
    const b = await user('builds-e@example.com');
    const bytes = Buffer.from('not really a tar, but bytes all the same');
    const hash = createHash('sha256').update(bytes).digest('hex');
    const put = (key: Record<string, string>, h: string) =>
      send('PUT', `/v1/builds/files/${h}`, {
        headers: { ...key, 'content-type': 'application/octet-stream' },
        raw: bytes.toString(),
      });
    const ok = await put(a.key, hash);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ hash, bytes: bytes.length });
    const wrong = await put(a.key, 'b'.repeat(64));
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { message: string }).message).toBe(
      'hash: is not the SHA-256 of the uploaded bytes',
    );
    // Uploaded by a, named by b: not b's.
    const other = await call('POST', '/v1/builds', {
      headers: b.key,
      body: { template: 'x', recipe: ['COPY a b'], context_hash: hash },
    });
    expect(other.status).toBe(400);
    const own = await call('POST', '/v1/builds', {
      headers: a.key,
      body: { template: 'x', recipe: ['COPY a b'], context_hash: hash },
    });
    expect(own.status).toBe(202);
  });

  it('platform builds are for administrators only, and a snapshot name is not a build target', async () => {
    const plain = await user('builds-f@example.com');
    const body = { template: 'platform-tools', recipe: ['true'] };
    expect((await call('POST', '/v1/admin/builds', { headers: plain.auth, body })).status).toBe(403);
    const root = await admin('builds-admin@example.com');
    const res = await call('POST', '/v1/admin/builds', { headers: root.auth, body });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const listed = await call('GET', '/v1/admin/builds', { headers: root.auth });
    expect((listed.body.builds as { id: string }[]).map((b) => b.id)).toEqual([res.body.id]);
    // A team's build list does not show the platform's.
    expect((await call('GET', '/v1/builds', { headers: plain.key })).body.builds).toEqual([]);
    await api.db
      .insertInto('templates')
      .values({
        team_id: plain.team.id,
        name: 'snappy',
        kind: 'snapshot',
        source_sandbox_id: null,
        vcpus: 1,
        memory_mb: 256,
        disk_mb: 512,
        size_bytes: 0,
      })
      .execute();
    const clash = await call('POST', '/v1/builds', {
      headers: plain.key,
      body: { template: 'snappy', recipe: [] },
    });
    expect(clash).toEqual({
      status: 409,
      body: { code: 'already_exists', message: 'name: "snappy" is a snapshot, not a built template' },
    });
  });
});
