import { UUID_PATTERN } from '@wrenn/core';
import type { Context, Hono } from 'hono';
import { sql } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/database.js';
import type { Env, ServerDeps } from '../http/app-types.js';
import { authed } from '../http/auth.js';
import { badRequest, notFound, optionalJsonBody, toApiError } from '../http/errors.js';
import { audit } from '../services/audit.js';
import { teamScope } from '../services/builds/build-files.js';
import {
  buildLogs,
  deleteBuiltTemplate,
  dropArtifactIfUnused,
  listBuilds,
  ownedBuild,
  requestBuild,
  startBuild,
  type BuildServiceDeps,
  type LogLevel,
} from '../services/builds/builds.js';
import { deleteTeamSnapshot, resolveTemplate } from '../services/templates.js';
import { BUILD_UPLOAD_PATH, requestApiKey, requestOrigin, signUploadToken } from './build-uploads.js';
import { parseBuildRequest, TAG, translateBuildStart } from './template-spec.js';
import {
  buildInfoView,
  logEntryView,
  templateBuildView,
  templateView,
  type LogRow,
  type TemplateRow,
} from './template-views.js';

const LEVEL = z.enum(['debug', 'info', 'warn', 'error']);
const StatusQuery = z.object({
  logsOffset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  level: LEVEL.optional(),
});
const LogsQuery = z.object({
  cursor: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  direction: z.enum(['forward', 'backward']).default('forward'),
  level: LEVEL.optional(),
  source: z.enum(['temporary', 'persistent']).optional(),
});
const Tags = z.array(TAG).min(1).max(50);
const AssignTags = z.object({ target: z.string().min(1), tags: Tags });
const RemoveTags = z.object({ name: z.string().min(1), tags: Tags });

type TemplateOrigin = 'snapshot' | 'template';

/**
 * A template the team may address in a path, by id or name (`name:tag` taken as `name`): its own
 * (built, or a snapshot where `origins` allows), or a platform built template when `platform`.
 * Another team's is indistinguishable from a missing one.
 */
async function addressedTemplate(
  db: Db,
  teamId: string,
  ref: string,
  opts: { origins?: TemplateOrigin[]; platform?: boolean } = {},
) {
  const name = ref.includes(':') ? ref.slice(0, ref.indexOf(':')) : ref;
  const origins = opts.origins ?? ['template'];
  const row = await db
    .selectFrom('templates')
    .selectAll()
    .where((eb) =>
      opts.platform
        ? eb.or([
            eb('team_id', '=', teamId),
            eb.and([eb('team_id', 'is', null), eb('origin', '=', 'template')]),
          ])
        : eb('team_id', '=', teamId),
    )
    .where('origin', 'in', origins)
    .where((eb) =>
      UUID_PATTERN.test(name) ? eb.or([eb('id', '=', name), eb('name', '=', name)]) : eb('name', '=', name),
    )
    // The team's own before the platform's of the same name.
    .orderBy(sql`team_id is null`)
    .executeTakeFirst();
  if (!row) throw notFound('template', ref);
  return row;
}

const buildDeps = (deps: ServerDeps): BuildServiceDeps => ({
  db: deps.db,
  hosts: deps.hosts,
  logger: deps.logger,
  queue: deps.builds.queue,
});

/** JSON bodies, with E2B's field names in the refusal. */
async function parseBody<T>(c: Context<Env>, schema: z.ZodType<T>): Promise<T> {
  const parsed = schema.safeParse((await optionalJsonBody(c.req.raw)) ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = (issue?.path ?? []).reduce<string>(
    (out, p) => (typeof p === 'number' ? `${out}[${p}]` : out ? `${out}.${String(p)}` : String(p)),
    '',
  );
  throw badRequest(field || 'body', issue?.message ?? 'invalid');
}

/**
 * E2B's Template SDK (`Template.build`, `buildInBackground`, `getBuildStatus`, tags, `exists`) on
 * Wrenn's builds (`services/builds`): docs/templates.md, "E2B's Template SDK".
 */
export function e2bTemplateRoutes(api: Hono<Env>, deps: ServerDeps): void {
  buildRoutes(api, deps);
  tagRoutes(api, deps);
  templateRoutes(api, deps);
}

/** Request a build, upload its files, start it, follow it. */
function buildRoutes(api: Hono<Env>, deps: ServerDeps): void {
  const { db } = deps;

  api.post('/v3/templates', async (c) => {
    const req = parseBuildRequest(await optionalJsonBody(c.req.raw));
    const key = await requestApiKey(db, c);
    const build = await requestBuild(db, { teamId: key.team_id, userId: key.created_by }, req);
    return c.json(
      {
        templateID: build.template_id,
        buildID: build.id,
        // What the build is known by once ready: the latest ready build is `default`.
        tags: [...new Set(['default', ...(req.tags ?? [])])],
        public: false,
        names: [req.templateName],
        aliases: [req.templateName],
      },
      202,
    );
  });

  api.get('/templates/:templateID/files/:hash', async (c) => {
    const key = await requestApiKey(db, c);
    await addressedTemplate(db, key.team_id, c.req.param('templateID'));
    const hash = c.req.param('hash');
    const present = await deps.builds.files.has(teamScope(key.team_id), hash);
    const token = await signUploadToken(key, hash);
    return c.json({ present, url: `${requestOrigin(c)}${BUILD_UPLOAD_PATH}${token}` }, 201);
  });

  api.post('/v2/templates/:templateID/builds/:buildID', async (c) => {
    const teamId = authed(c, 'teamId');
    const template = await addressedTemplate(db, teamId, c.req.param('templateID'));
    const build = await ownedBuild(db, { teamId }, c.req.param('buildID'), template.id);
    const { spec, skipCache, uploads } = translateBuildStart(await optionalJsonBody(c.req.raw));
    for (const { index, hash } of uploads)
      if (!(await deps.builds.files.has(teamScope(teamId), hash)))
        throw badRequest(
          `steps[${index}].filesHash`,
          `no files were uploaded for ${hash} (GET /templates/{templateID}/files/{hash} gives the upload URL)`,
        );
    if ('template' in spec.from && spec.from.template !== 'base')
      await resolveTemplate(db, teamId, spec.from.template).catch((err: unknown) => {
        const known = toApiError(err);
        if (known && (known.status === 404 || known.status === 409))
          throw badRequest('fromTemplate', known.message);
        throw err;
      });
    await startBuild(buildDeps(deps), build, { spec, kind: 'snapshot', skipCache });
    await audit(c, deps, { action: 'build.start', target: build.id });
    // No body, said so: the SDK's client parses any other 2xx but 204 as JSON.
    return c.body(null, 202, { 'content-length': '0' });
  });

  api.get('/templates/:templateID/builds/:buildID/status', async (c) => {
    const teamId = authed(c, 'teamId');
    const query = parseQuery(c, StatusQuery);
    const template = await addressedTemplate(db, teamId, c.req.param('templateID'));
    const build = await ownedBuild(db, { teamId }, c.req.param('buildID'), template.id);
    const logs = await buildLogs(db, build.id, {
      offset: query.logsOffset,
      limit: query.limit,
      minLevel: query.level,
    });
    return c.json(buildInfoView(build, logs), 200);
  });

  api.get('/templates/:templateID/builds/:buildID/logs', async (c) => {
    const teamId = authed(c, 'teamId');
    const query = parseQuery(c, LogsQuery);
    const template = await addressedTemplate(db, teamId, c.req.param('templateID'));
    const build = await ownedBuild(db, { teamId }, c.req.param('buildID'), template.id);
    const levels = LEVEL.options.slice(LEVEL.options.indexOf(query.level ?? 'debug')) as LogLevel[];
    const forward = query.direction === 'forward';
    let rows = db
      .selectFrom('template_build_logs')
      .select(['at', 'level', 'step', 'message'])
      .where('build_id', '=', build.id)
      .where('level', 'in', levels);
    if (query.cursor !== undefined) rows = rows.where('at', forward ? '>=' : '<=', new Date(query.cursor));
    const logs: LogRow[] = await rows
      .orderBy('seq', forward ? 'asc' : 'desc')
      .limit(query.limit)
      .execute();
    return c.json({ logs: logs.map(logEntryView) }, 200);
  });
}

function parseQuery<T>(c: Context<Env>, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(c.req.query());
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw badRequest(issue?.path.map(String).join('.') || 'query', issue?.message ?? 'invalid');
}

/** The build a tag names: `default` (or none) is the template's latest ready build. */
async function taggedBuild(
  db: Db,
  template: { id: string; artifact_id: string | null },
  tag: string,
  ref: string,
) {
  const tagged = await db
    .selectFrom('template_tags')
    .select('build_id')
    .where('template_id', '=', template.id)
    .where('tag', '=', tag)
    .executeTakeFirst();
  if (tagged) return tagged.build_id;
  if (tag === 'default' && template.artifact_id) {
    const latest = await db
      .selectFrom('template_builds')
      .select('id')
      .where('template_id', '=', template.id)
      .where('artifact_id', '=', template.artifact_id)
      .where('status', '=', 'ready')
      .executeTakeFirst();
    if (latest) return latest.id;
  }
  throw notFound('template', ref);
}

/** Assign, remove, list tags. */
/** The artifacts of the builds these tags name (and the template's current one). */
async function taggedArtifacts(db: ServerDeps['db'], templateId: string, tags: string[]) {
  const rows = await db
    .selectFrom('template_tags')
    .innerJoin('template_builds', 'template_builds.id', 'template_tags.build_id')
    .select('template_builds.artifact_id')
    .where('template_tags.template_id', '=', templateId)
    .where('template_tags.tag', 'in', tags)
    .execute();
  const current = await db
    .selectFrom('templates')
    .select('artifact_id')
    .where('id', '=', templateId)
    .executeTakeFirst();
  return [
    ...new Set([...rows.map((r) => r.artifact_id), current?.artifact_id].filter((id): id is string => !!id)),
  ];
}

/** A build no tag names any more keeps no files. */
async function dropUntagged(deps: ServerDeps, artifacts: string[]) {
  for (const id of artifacts) await dropArtifactIfUnused(deps, id);
}

function tagRoutes(api: Hono<Env>, deps: ServerDeps): void {
  const { db } = deps;

  api.post('/templates/tags', async (c) => {
    const teamId = authed(c, 'teamId');
    const body = await parseBody(c, AssignTags);
    const colon = body.target.indexOf(':');
    const tag = colon === -1 ? 'default' : body.target.slice(colon + 1);
    const template = await addressedTemplate(db, teamId, body.target);
    const buildId = await taggedBuild(db, template, tag, body.target);
    const tags = [...new Set(body.tags)];
    const before = await taggedArtifacts(db, template.id, tags);
    await db.transaction().execute(async (tx) => {
      // Moved, not updated: a tag's createdAt is when it came to name this build.
      await tx
        .deleteFrom('template_tags')
        .where('template_id', '=', template.id)
        .where('tag', 'in', tags)
        .execute();
      await tx
        .insertInto('template_tags')
        .values(tags.map((t) => ({ template_id: template.id, tag: t, build_id: buildId })))
        .execute();
      // `default` is what `name` alone starts: the template's current artifact follows it.
      if (tags.includes('default')) {
        const artifact = await tx
          .selectFrom('template_builds')
          .innerJoin('templates', 'templates.id', 'template_builds.artifact_id')
          .select([
            'templates.id',
            'templates.kind',
            'templates.vcpus',
            'templates.memory_mb',
            'templates.disk_mb',
          ])
          .where('template_builds.id', '=', buildId)
          .executeTakeFirst();
        if (artifact)
          await tx
            .updateTable('templates')
            .set({
              artifact_id: artifact.id,
              kind: artifact.kind,
              vcpus: artifact.vcpus,
              memory_mb: artifact.memory_mb,
              disk_mb: artifact.disk_mb,
            })
            .where('id', '=', template.id)
            .execute();
      }
    });
    await dropUntagged(deps, before);
    return c.json({ buildID: buildId, tags }, 201);
  });

  api.delete('/templates/tags', async (c) => {
    const teamId = authed(c, 'teamId');
    const body = await parseBody(c, RemoveTags);
    const template = await addressedTemplate(db, teamId, body.name);
    const index = body.tags.indexOf('default');
    if (index !== -1)
      throw badRequest(
        `tags[${index}]`,
        '"default" always names the latest ready build; it cannot be removed',
      );
    const held = await db
      .selectFrom('template_tags')
      .select('tag')
      .where('template_id', '=', template.id)
      .where('tag', 'in', body.tags)
      .execute();
    const missing = body.tags.find((t) => !held.some((h) => h.tag === t));
    if (missing !== undefined) throw notFound('tag', `${template.name}:${missing}`);
    const before = await taggedArtifacts(db, template.id, body.tags);
    await db
      .deleteFrom('template_tags')
      .where('template_id', '=', template.id)
      .where('tag', 'in', body.tags)
      .execute();
    await dropUntagged(deps, before);
    return c.body(null, 204);
  });

  api.get('/templates/:templateID/tags', async (c) => {
    const teamId = authed(c, 'teamId');
    const template = await addressedTemplate(db, teamId, c.req.param('templateID'), { platform: true });
    const rows = await db
      .selectFrom('template_tags')
      .select(['tag', 'build_id', 'created_at'])
      .where('template_id', '=', template.id)
      .orderBy('created_at')
      .orderBy('tag')
      .execute();
    const tags = rows.map((r) => ({
      tag: r.tag,
      buildID: r.build_id,
      createdAt: r.created_at.toISOString(),
    }));
    // The latest ready build is `default` whether or not a row says so.
    if (!tags.some((t) => t.tag === 'default') && template.artifact_id) {
      const latest = await db
        .selectFrom('template_builds')
        .select(['id', 'finished_at', 'created_at'])
        .where('template_id', '=', template.id)
        .where('artifact_id', '=', template.artifact_id)
        .executeTakeFirst();
      if (latest)
        tags.unshift({
          tag: 'default',
          buildID: latest.id,
          createdAt: (latest.finished_at ?? latest.created_at).toISOString(),
        });
    }
    return c.json(tags, 200);
  });
}

/** Exists, list, get with builds, delete. */
function templateRoutes(api: Hono<Env>, deps: ServerDeps): void {
  const { db } = deps;

  // `Template.exists(name)`: the team's template (built, or a snapshot) or a platform one by name.
  api.get('/templates/aliases/:alias', async (c) => {
    const teamId = authed(c, 'teamId');
    const alias = c.req.param('alias');
    const row = await addressedTemplate(db, teamId, alias, {
      origins: ['template', 'snapshot'],
      platform: true,
    });
    return c.json({ templateID: row.id, public: row.team_id === null }, 200);
  });

  for (const path of ['/templates', '/v2/templates'])
    api.get(path, async (c) => {
      const teamId = authed(c, 'teamId');
      const rows = await db
        .selectFrom('templates')
        .selectAll()
        .where('team_id', '=', teamId)
        .where('origin', '=', 'template')
        .orderBy('name')
        .execute();
      const builds = await listBuilds(db, { teamId }, { limit: 1000 });
      return c.json(
        rows.map((row) =>
          templateView(
            row as TemplateRow,
            builds.filter((b) => b.template_id === row.id),
          ),
        ),
        200,
      );
    });

  api.get('/templates/:templateID', async (c) => {
    const teamId = authed(c, 'teamId');
    const limit = parseQuery(
      c,
      z.object({ limit: z.coerce.number().int().min(1).max(100).default(100) }),
    ).limit;
    const template = await addressedTemplate(db, teamId, c.req.param('templateID'));
    const builds = await listBuilds(db, { teamId }, { templateId: template.id, limit });
    const view = templateView(template, builds);
    return c.json(
      {
        templateID: view.templateID,
        names: view.names,
        aliases: view.aliases,
        public: view.public,
        createdAt: view.createdAt,
        updatedAt: view.updatedAt,
        lastSpawnedAt: null,
        spawnCount: 0,
        builds: builds.map(templateBuildView),
      },
      200,
    );
  });

  // A built template (its builds cancelled, every artifact's files deleted) or a snapshot
  // (`Sandbox.deleteSnapshot` calls this too).
  api.delete('/templates/:templateID', async (c) => {
    const teamId = authed(c, 'teamId');
    const row = await addressedTemplate(db, teamId, c.req.param('templateID'), {
      origins: ['template', 'snapshot'],
    });
    if (row.origin === 'snapshot') await deleteTeamSnapshot(deps, row.id);
    else await deleteBuiltTemplate(buildDeps(deps), row.id);
    return c.body(null, 204);
  });
}
