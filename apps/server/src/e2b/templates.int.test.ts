import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BuildError, Sandbox, Template, waitForPort, type LogEntry, type TemplateClass } from 'e2b';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hashApiKey } from '../auth/tokens.js';
import type { Db } from '../db/database.js';
import { BuildFiles, teamScope } from '../services/builds/build-files.js';
import { appendLogs, type BuildQueue } from '../services/builds/builds.js';
import { TrustedProxies } from '../http/client-address.js';
import { describeOnBackends, startTestServer, testBackends, useTestServer } from '../testing/api.js';
import { insertTemplateRow } from '../testing/rows.js';

// E2B's Template SDK's wire against Wrenn, driven by the real `e2b` SDK where it can be: request,
// upload, start, status, tags, exists, delete, and every route's refusals. Builds do not run here
// (no agent): the queue below records them and, when told to, ends them as the runner would
// (a ready build's rows, or a failure); test/e2e/e2b-template runs them for real.
const backends = await testBackends();
const UPLOAD_MAX = 32 * 1024 * 1024;

let context: string;
beforeAll(async () => {
  context = await mkdtemp(path.join(tmpdir(), 'e2b-templates-int-'));
  await mkdir(path.join(context, 'app'));
  await writeFile(path.join(context, 'app', 'run.sh'), 'echo run\n');
  await writeFile(path.join(context, 'app', 'data.txt'), 'data\n');
});
afterAll(() => rm(context, { recursive: true, force: true }));

/** A PUT that declares a length over the limit and sends none of it: the status. */
function declaredTooLarge(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'PUT', headers: { 'content-length': String(UPLOAD_MAX + 1) } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.flushHeaders();
  });
}

type Outcome = 'stay' | 'ready' | 'fail';

/** A queue that records builds and ends them as told, writing what the runner writes. */
function scriptedQueue(getDb: () => Db) {
  const enqueued: string[] = [];
  let outcome: Outcome = 'stay';
  const finish = async (buildId: string, how: Outcome) => {
    const db = getDb();
    const build = await db
      .selectFrom('template_builds')
      .selectAll()
      .where('id', '=', buildId)
      .executeTakeFirstOrThrow();
    await db
      .updateTable('template_builds')
      .set({ status: 'building', started_at: new Date() })
      .where('id', '=', buildId)
      .execute();
    await appendLogs(db, buildId, [
      { at: new Date(), level: 'info', step: 'base', message: 'starting a sandbox from base' },
      { at: new Date(), level: 'info', step: '1', message: '[1/1] RUN make' },
      { at: new Date(), level: 'debug', step: '1', message: 'done in 5 ms' },
    ]);
    if (how === 'fail') {
      await appendLogs(db, buildId, [
        { at: new Date(), level: 'error', step: '1', message: 'make: no rule' },
      ]);
      await db
        .updateTable('template_builds')
        .set({
          status: 'error',
          finished_at: new Date(),
          reason: JSON.stringify({
            step: '1',
            message: 'step 1 failed with exit code 2',
            log_tail: ['make: no rule'],
          }),
        })
        .where('id', '=', buildId)
        .execute();
      return;
    }
    const artifact = await db
      .insertInto('templates')
      .values({
        team_id: build.team_id,
        name: `build-${buildId}`,
        kind: 'snapshot',
        origin: 'artifact',
        source_sandbox_id: null,
        vcpus: build.vcpus,
        memory_mb: build.memory_mb,
        disk_mb: build.disk_mb,
        size_bytes: 0,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db
      .updateTable('templates')
      .set({ artifact_id: artifact.id })
      .where('id', '=', build.template_id)
      .execute();
    await db
      .updateTable('template_builds')
      .set({ status: 'ready', finished_at: new Date(), artifact_id: artifact.id })
      .where('id', '=', buildId)
      .execute();
    for (const tag of new Set(['default', ...build.tags]))
      await db
        .insertInto('template_tags')
        .values({ template_id: build.template_id, tag, build_id: buildId })
        .onConflict((oc) => oc.columns(['template_id', 'tag']).doUpdateSet({ build_id: buildId }))
        .execute();
  };
  const queue: BuildQueue = {
    enqueue(buildId) {
      enqueued.push(buildId);
      const how = outcome;
      if (how !== 'stay') setTimeout(() => void finish(buildId, how), 100);
      return Promise.resolve();
    },
    cancelRunning: () => undefined,
  };
  return {
    queue,
    enqueued,
    endNextAs(how: Outcome) {
      outcome = how;
    },
  };
}

describeOnBackends("E2B's Template SDK against Wrenn", backends, (backend) => {
  const filesDir = path.join(tmpdir(), `e2b-template-files-${process.pid}-${backend.name}`);
  const files = new BuildFiles(filesDir);
  const scripted = scriptedQueue(() => api.db);
  const api = useTestServer(backend, {
    builds: { files, queue: scripted.queue },
    uploadMaxBytes: UPLOAD_MAX,
  });
  afterAll(() => rm(filesDir, { recursive: true, force: true }));

  async function team(email: string) {
    const u = await api.user(email);
    const key = u.key['x-api-key']!;
    return { ...u, apiKey: key, sdk: { apiKey: key, apiUrl: api.base }, scope: teamScope(u.team.id) };
  }

  const sdkTemplate = () =>
    Template({ fileContextPath: context })
      .fromBaseImage()
      .runCmd('make', { user: 'root' })
      .copy('app', '/opt/app', { mode: 0o755 })
      .setEnvs({ MODE: 'prod' })
      .setWorkdir('/opt/app')
      .setUser('user')
      .setStartCmd('./run.sh', waitForPort(8000));

  it('buildInBackground: requests the build, uploads the COPY files to Wrenn, starts it; getBuildStatus follows it', async () => {
    const t = await team('e2b-tpl-bg@example.com');
    scripted.endNextAs('stay');
    const logs: string[] = [];
    const info = await Template.buildInBackground(sdkTemplate(), 'bg-app:v1', {
      ...t.sdk,
      tags: ['beta'],
      cpuCount: 1,
      memoryMB: 768,
      onBuildLogs: (e: LogEntry) => logs.push(e.message),
    });
    expect(info).toMatchObject({ name: 'bg-app:v1', tags: ['default', 'v1', 'beta'] });
    expect(scripted.enqueued).toContain(info.buildId);
    expect(logs).toContain("Uploaded 'app'");

    const build = await api.db
      .selectFrom('template_builds')
      .selectAll()
      .where('id', '=', info.buildId)
      .executeTakeFirstOrThrow();
    expect(build).toMatchObject({
      template_id: info.templateId,
      status: 'waiting',
      kind: 'snapshot',
      vcpus: 1,
      memory_mb: 768,
      disk_mb: 4096,
      tags: ['v1', 'beta'],
      skip_cache: false,
      step_count: 5,
      created_by: t.user.id,
    });
    const spec = build.spec as {
      from: unknown;
      steps: { type: string; filesHash?: string }[];
      startCmd: string;
      readyCmd: string;
    };
    expect(spec.from).toEqual({ template: 'base' });
    expect(spec.steps.map((s) => s.type)).toEqual(['run', 'copy', 'env', 'workdir', 'user']);
    expect(spec).toMatchObject({ startCmd: './run.sh', readyCmd: '[ -n "$(ss -Htuln sport = :8000)" ]' });
    // The SDK's gzip tar, stored as it came, under the team's scope.
    const hash = spec.steps[1]!.filesHash!;
    expect(await files.has(t.scope, hash)).toBe(true);
    expect(await files.isGzip(t.scope, hash)).toBe(true);

    const status = await Template.getBuildStatus(info, t.sdk);
    expect(status).toMatchObject({ templateID: info.templateId, buildID: info.buildId, status: 'waiting' });
    expect(status.logEntries.map((e) => e.message)).toEqual(['queued']);
    expect(status.reason).toBeUndefined();

    // The same files again: present, so the SDK skips the upload.
    const again: string[] = [];
    await Template.buildInBackground(sdkTemplate(), 'bg-app', {
      ...t.sdk,
      onBuildLogs: (e: LogEntry) => again.push(e.message),
    });
    expect(again).toContain("Skipping upload of 'app', already cached");
    // Addressed by name as well as by id.
    const byName = await api.call('GET', `/templates/bg-app/builds/${info.buildId}/status`, {
      headers: t.key,
    });
    expect(byName.body).toMatchObject({ status: 'waiting', logs: [expect.stringContaining('info: queued')] });
  });

  it('Template.build waits for the build: a failure is a BuildError with the step and its log; then ready', async () => {
    const t = await team('e2b-tpl-wait@example.com');
    scripted.endNextAs('fail');
    const seen: string[] = [];
    const failed = await Template.build(sdkTemplate(), 'wait-app', {
      ...t.sdk,
      onBuildLogs: (e: LogEntry) => seen.push(e.message),
    }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(BuildError);
    expect((failed as Error).message).toBe('step 1 failed with exit code 2');
    expect(seen).toEqual(expect.arrayContaining(['queued', '[1/1] RUN make', 'make: no rule']));

    scripted.endNextAs('ready');
    const ready = await Template.build(sdkTemplate(), 'wait-app:v2', t.sdk);
    expect(ready).toMatchObject({ name: 'wait-app:v2', tags: ['default', 'v2'] });
    const status = await api.call(
      'GET',
      `/templates/${ready.templateId}/builds/${ready.buildId}/status?logsOffset=1&level=info`,
      { headers: t.key },
    );
    expect(status.body).toMatchObject({ status: 'ready' });
    // From the second line at info and above: the debug line is left out.
    expect((status.body.logEntries as { message: string; step?: string }[]).map((e) => e.message)).toEqual([
      'starting a sandbox from base',
      '[1/1] RUN make',
    ]);
    const logs = await api.call(
      'GET',
      `/templates/wait-app/builds/${ready.buildId}/logs?direction=backward&limit=2`,
      { headers: t.key },
    );
    expect((logs.body.logs as { message: string }[]).map((l) => l.message)).toEqual([
      'done in 5 ms',
      '[1/1] RUN make',
    ]);
    scripted.endNextAs('stay');
  });

  it('tags: getTags, assignTags, removeTags; exists; list; delete by name', async () => {
    const t = await team('e2b-tpl-tags@example.com');
    scripted.endNextAs('ready');
    const first = await Template.build(sdkTemplate(), 'tagged:v1', t.sdk);
    const second = await Template.build(sdkTemplate(), 'tagged', t.sdk);
    scripted.endNextAs('stay');
    const tags = async () =>
      Object.fromEntries((await Template.getTags('tagged', t.sdk)).map((x) => [x.tag, x.buildId]));
    expect(await tags()).toEqual({ default: second.buildId, v1: first.buildId });

    expect(await Template.assignTags('tagged:v1', ['prod', 'stable'], t.sdk)).toEqual({
      buildId: first.buildId,
      tags: ['prod', 'stable'],
    });
    expect(await tags()).toEqual({
      default: second.buildId,
      v1: first.buildId,
      prod: first.buildId,
      stable: first.buildId,
    });
    // `default` moved back to v1's build: `name` alone now starts that build's files.
    await Template.assignTags('tagged:v1', 'default', t.sdk);
    const row = await api.db
      .selectFrom('templates')
      .select('artifact_id')
      .where('id', '=', first.templateId)
      .executeTakeFirstOrThrow();
    const v1 = await api.db
      .selectFrom('template_builds')
      .select('artifact_id')
      .where('id', '=', first.buildId)
      .executeTakeFirstOrThrow();
    expect(row.artifact_id).toBe(v1.artifact_id);
    await Template.removeTags('tagged', ['stable'], t.sdk);
    expect(Object.keys(await tags()).sort()).toEqual(['default', 'prod', 'v1']);

    const refused = async (p: Promise<unknown>) => ((await p.catch((e: unknown) => e)) as Error).message;
    expect(await refused(Template.assignTags('tagged:nope', 'x', t.sdk))).toMatch(
      /^404: template "tagged:nope" not found/,
    );
    expect(await refused(Template.removeTags('tagged', 'default', t.sdk))).toMatch(
      /^400: tags\[0\]: "default"/,
    );
    expect(await refused(Template.removeTags('tagged', 'gone', t.sdk))).toMatch(
      /^404: tag "tagged:gone" not found/,
    );
    expect(await refused(Template.assignTags('tagged:v1', 'bad tag', t.sdk))).toMatch(/^400: tags\[0\]: /);

    expect(await Template.exists('tagged', t.sdk)).toBe(true);
    expect(await Template.exists('untagged', t.sdk)).toBe(false);
    const list = await api.call('GET', '/templates', { headers: t.key });
    expect(list.body).toEqual([
      expect.objectContaining({
        templateID: first.templateId,
        names: ['tagged'],
        buildCount: 2,
        buildStatus: 'ready',
        public: false,
      }),
    ]);
    const one = await api.call('GET', '/templates/tagged', { headers: t.key });
    expect((one.body.builds as { buildID: string }[]).map((b) => b.buildID).sort()).toEqual(
      [first.buildId, second.buildId].sort(),
    );

    // Another team sees none of it.
    const other = await team('e2b-tpl-tags-other@example.com');
    expect(await Template.exists('tagged', other.sdk)).toBe(false);
    expect(await refused(Template.getTags('tagged', other.sdk))).toMatch(/^404/);
    expect((await api.call('DELETE', '/templates/tagged', { headers: other.key })).status).toBe(404);

    expect((await api.call('DELETE', '/templates/tagged', { headers: t.key })).status).toBe(204);
    expect(await Template.exists('tagged', t.sdk)).toBe(false);
    expect(
      await api.db.selectFrom('templates').select('id').where('team_id', '=', t.team.id).execute(),
    ).toEqual([]);
    // Sandbox.deleteSnapshot calls the same route: a missing one is `false`.
    expect(await Sandbox.deleteSnapshot('tagged', t.sdk)).toBe(false);
  });

  it('refuses bad builds naming the field: an unknown hash, an unsupported registry, a bad step, a second start', async () => {
    const t = await team('e2b-tpl-bad@example.com');
    const bad = async (template: TemplateClass) =>
      ((await Template.buildInBackground(template, 'bad-app', t.sdk).catch((e: unknown) => e)) as Error)
        .message;
    expect(await bad(Template().fromBaseImage().runCmd('ls', { user: 'Not A User' }))).toMatch(
      /^400: steps\[0\]\.args: must be a Linux user/,
    );
    expect(
      await bad(
        Template().fromAWSRegistry('1.dkr.ecr.eu-west-1.amazonaws.com/app', {
          accessKeyId: 'a',
          secretAccessKey: 'b',
          region: 'eu-west-1',
        }),
      ),
    ).toMatch(/^400: fromImageRegistry\.type: "aws" registries are not supported/);
    expect(await bad(Template().fromTemplate('nosuch:v9'))).toMatch(
      /^400: fromTemplate: template "nosuch:v9" not found/,
    );

    const req = await api.call('POST', '/v3/templates', { headers: t.key, body: { name: 'raw-app' } });
    expect(req.status).toBe(202);
    const { templateID, buildID } = req.body as { templateID: string; buildID: string };
    const start = (body: unknown) =>
      api.call('POST', `/v2/templates/${templateID}/builds/${buildID}`, { headers: t.key, body });
    const hash = 'b'.repeat(64);
    expect(
      await start({
        fromImage: 'e2bdev/base',
        steps: [
          { type: 'RUN', args: ['ls'] },
          { type: 'COPY', args: ['a', '/a', '', ''], filesHash: hash },
        ],
      }),
    ).toEqual({
      status: 400,
      body: {
        code: 400,
        message: `steps[1].filesHash: no files were uploaded for ${hash} (GET /templates/{templateID}/files/{hash} gives the upload URL)`,
      },
    });
    // Uploaded by another team: still unknown to this one.
    const other = await team('e2b-tpl-bad-other@example.com');
    await files.put(other.scope, hash, Readable.from([Buffer.from('x')]), { maxBytes: 10, verify: false });
    expect((await start({ steps: [{ type: 'COPY', args: ['a', '/a'], filesHash: hash }] })).status).toBe(400);
    expect(
      (await start({ fromImage: 'ubuntu:24.04', steps: [{ type: 'ENV', args: ['A'] }] })).body.message,
    ).toMatch(/^steps\[0\]\.args: ENV takes/);
    expect(
      (await start({ fromImage: 'ubuntu:24.04', fromImageRegistry: { type: 'registry', username: 'u' } }))
        .body.message,
    ).toMatch(/^fromImageRegistry\.password: /);
    expect(
      await start({
        fromImage: 'ubuntu:24.04',
        fromImageRegistry: { type: 'registry', username: 'u', password: 'p' },
      }),
    ).toEqual({ status: 202, body: {} });
    const stored = await api.db
      .selectFrom('template_builds')
      .select('spec')
      .where('id', '=', buildID)
      .executeTakeFirstOrThrow();
    expect(stored.spec).toEqual({
      from: { image: 'ubuntu:24.04', credentials: { username: 'u', password: 'p' } },
      steps: [],
    });
    expect((await start({})).status).toBe(409);
    // Another team's build, and a build under another template, are not found.
    expect(
      (
        await api.call('POST', `/v2/templates/${templateID}/builds/${buildID}`, {
          headers: other.key,
          body: {},
        })
      ).status,
    ).toBe(404);
  });

  it('answers every route’s errors as E2B does ({code, message})', async () => {
    const t = await team('e2b-tpl-errors@example.com');
    const snapId = await insertTemplateRow(api.db, { team_id: t.team.id, name: 'a-snapshot' });
    const req = await api.call('POST', '/v3/templates', { headers: t.key, body: { name: 'err-app' } });
    const { templateID, buildID } = req.body as { templateID: string; buildID: string };
    const key = t.key;
    const cases: [string, string, Record<string, string>, unknown, number, RegExp?][] = [
      ['POST', '/v3/templates', {}, { name: 'x' }, 401],
      ['POST', '/v3/templates', key, {}, 400, /^name: is required/],
      ['POST', '/v3/templates', key, { name: 'Bad/Name' }, 400, /^name: /],
      ['POST', '/v3/templates', key, { name: 'x', cpuCount: 65 }, 400, /^cpuCount: /],
      ['POST', '/v3/templates', key, { name: 'a-snapshot' }, 409, /is a snapshot/],
      ['GET', `/templates/${templateID}/files/${'c'.repeat(64)}`, {}, undefined, 401],
      ['GET', `/templates/${templateID}/files/not-a-hash`, key, undefined, 400, /^hash: /],
      ['GET', `/templates/nosuch/files/${'c'.repeat(64)}`, key, undefined, 404],
      [
        'GET',
        `/templates/${templateID}/builds/${buildID}/status?level=loud`,
        key,
        undefined,
        400,
        /^level: /,
      ],
      [
        'GET',
        `/templates/${templateID}/builds/${buildID}/status?logsOffset=-1`,
        key,
        undefined,
        400,
        /^logsOffset: /,
      ],
      [
        'GET',
        `/templates/${templateID}/builds/00000000-0000-4000-8000-000000000000/status`,
        key,
        undefined,
        404,
      ],
      ['GET', `/templates/${templateID}/builds/not-a-uuid/logs`, key, undefined, 404],
      ['POST', '/templates/tags', key, { target: 'err-app', tags: [] }, 400, /^tags: /],
      ['POST', '/templates/tags', key, { target: 'err-app', tags: ['x'] }, 404],
      ['DELETE', '/templates/tags', key, { name: 'nosuch', tags: ['x'] }, 404],
      ['GET', '/templates/nosuch/tags', key, undefined, 404],
      ['GET', '/templates/aliases/nosuch', key, undefined, 404],
      ['DELETE', '/templates/nosuch', key, undefined, 404],
      ['POST', '/v2/sandboxes', key, { templateID: 'err-app' }, 409, /no ready build/],
      ['POST', '/v2/sandboxes', key, { templateID: 'err-app:v1' }, 404, /"err-app:v1" not found/],
      ['POST', '/v2/sandboxes', key, { templateID: 'a:b:c' }, 400, /^templateID: /],
      ['POST', '/v2/sandboxes', key, { templateID: 'err-app:bad tag' }, 400, /^templateID: /],
      ['PUT', '/build-uploads/forged', {}, 'x', 403, /invalid or expired/],
    ];
    for (const [method, url, headers, body, status, message] of cases) {
      const res = await api.call(method, url, { headers, body });
      expect(res.status, `${method} ${url} ${JSON.stringify(res.body)}`).toBe(status);
      expect(Object.keys(res.body).sort(), `${method} ${url}`).toEqual(['code', 'message']);
      expect(res.body.code).toBe(status);
      if (message) expect(res.body.message, `${method} ${url}`).toMatch(message);
    }
    // A snapshot is found by exists and deleted by the same route.
    expect((await api.call('GET', '/templates/aliases/a-snapshot', { headers: key })).body).toEqual({
      templateID: snapId,
      public: false,
    });
    expect((await api.call('DELETE', `/templates/${snapId}`, { headers: key })).status).toBe(204);
  });

  it('upload URLs: on this server (behind a trusted proxy, its forwarded origin), token only, streamed to disk byte for byte, limited, expiring, voided with the key', async () => {
    const t = await team('e2b-tpl-upload@example.com');
    const req = await api.call('POST', '/v3/templates', { headers: t.key, body: { name: 'up-app' } });
    const templateID = req.body.templateID as string;
    const hash = 'd'.repeat(64);
    // The URL is at the origin the request came to: X-Forwarded-* only from a trusted proxy.
    const forwarded = { ...t.key, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'wrenn.example.com' };
    const forged = await api.call('GET', `/templates/up-app/files/${hash}`, { headers: forwarded });
    expect(forged.status).toBe(201);
    expect(Object.keys(forged.body).sort()).toEqual(['present', 'url']);
    expect(forged.body.present).toBe(false);
    expect(forged.body.url).toMatch(new RegExp(`^${api.base}/build-uploads/[\\w-]+\\.[\\w-]+\\.[\\w-]+$`));
    const behindProxy = await startTestServer(api.db, {
      builds: { files, queue: scripted.queue },
      trustedProxies: new TrustedProxies(['127.0.0.1']),
    });
    try {
      const link = await behindProxy.call('GET', `/templates/up-app/files/${hash}`, { headers: forwarded });
      expect(link.body.url).toMatch(/^https:\/\/wrenn\.example\.com\/build-uploads\//);
    } finally {
      await behindProxy.stop();
    }
    const { url } = (await api.call('GET', `/templates/${templateID}/files/${hash}`, { headers: t.key }))
      .body as { url: string };
    expect(url.startsWith(`${api.base}/build-uploads/`)).toBe(true);

    // 24 MiB, streamed (chunked: no length given), never whole in the test either.
    const digest = createHash('sha256');
    function* body(mib: number) {
      for (let i = 0; i < mib; i++) {
        const chunk = Buffer.alloc(1024 * 1024, i % 251);
        if (mib === 24) digest.update(chunk);
        yield new Uint8Array(chunk);
      }
    }
    const put = (target: string, mib: number) =>
      fetch(target, { method: 'PUT', body: ReadableStream.from(body(mib)), duplex: 'half' });
    const ok = await put(url, 24);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ hash, bytes: 24 * 1024 * 1024 });
    const stored = createHash('sha256');
    for await (const c of createReadStream(files.path(t.scope, hash))) stored.update(c as Buffer);
    expect(stored.digest('hex')).toBe(digest.digest('hex'));
    expect(
      (await api.call('GET', `/templates/${templateID}/files/${hash}`, { headers: t.key })).body.present,
    ).toBe(true);

    // Past the server's limit: 413, declared or streamed, and nothing stored.
    const big = 'e'.repeat(64);
    const bigUrl = (
      (await api.call('GET', `/templates/${templateID}/files/${big}`, { headers: t.key })).body as {
        url: string;
      }
    ).url;
    expect(await declaredTooLarge(bigUrl)).toBe(413);
    // Streamed past it: the server answers 413 and closes; the client may see the close first.
    const streamed = await put(bigUrl, 33).then(
      (res) => res.status,
      () => 'closed',
    );
    expect([413, 'closed']).toContain(streamed);
    expect(await files.has(t.scope, big)).toBe(false);

    // An expired token, and one of a revoked key, are refused.
    const keyRow = await api.db
      .selectFrom('api_keys')
      .select(['id', 'key_hash'])
      .where('key_hash', '=', hashApiKey(t.apiKey))
      .executeTakeFirstOrThrow();
    const expired = await new SignJWT({ team: t.team.id })
      .setProtectedHeader({ alg: 'HS256', kid: keyRow.id })
      .setAudience('wrenn:build-upload')
      .setSubject(big)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 10)
      .sign(Buffer.from(keyRow.key_hash, 'hex'));
    expect((await fetch(`${api.base}/build-uploads/${expired}`, { method: 'PUT', body: 'x' })).status).toBe(
      403,
    );
    await api.db.deleteFrom('api_keys').where('id', '=', keyRow.id).execute();
    expect((await fetch(url, { method: 'PUT', body: 'x' })).status).toBe(403);
  });
});
