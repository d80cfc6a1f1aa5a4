import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { App, Env, ServerDeps } from '../http/app-types.js';
import { authed, requireTeamCaller } from '../http/auth.js';
import { badRequest } from '../http/errors.js';
import { apiKey, bearer, errors, json, jsonBody, TEMPLATE_NAME } from '../http/schemas.js';
import { audit } from '../services/audit.js';
import { teamScope } from '../services/builds/build-files.js';
import {
  buildLogs,
  buildView,
  cancelBuild,
  createBuild,
  listBuilds,
  ownedBuild,
  type BuildOwner,
} from '../services/builds/builds.js';
import { parseRecipe, RecipeError, type BuildSpec } from '../services/builds/spec.js';

const DEFAULT_SIZES = { vcpus: 2, memory_mb: 1024, disk_mb: 4096 };

const CreateBuild = z
  .strictObject({
    template: TEMPLATE_NAME.openapi({ description: 'The template to make (made on its first build)' }),
    from: z.string().min(1).optional().openapi({
      description:
        'The template the build starts from (`base`, a snapshot, a built template); default `base`',
    }),
    from_image: z.string().min(1).max(512).optional().openapi({
      description:
        'Or an OCI image from a registry (`[registry/]repository[:tag][@sha256:…]`), pulled by the build host',
    }),
    registry_credentials: z
      .strictObject({ username: z.string().min(1), password: z.string().min(1) })
      .optional()
      .openapi({
        description: "For `from_image`: the registry's credentials (kept only while the build runs)",
      }),
    recipe: z.array(z.string().max(65_536)).max(500).openapi({
      description:
        'One instruction per line: `RUN cmd`, `COPY [--chown=user] [--chmod=0755] src dest`, `ENV K=V …`, `WORKDIR dir`, `USER name`; a line without an instruction is a RUN',
    }),
    context_hash: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 in hex')
      .optional()
      .openapi({ description: 'The tar COPY takes from, uploaded first to `PUT …/builds/files/{hash}`' }),
    start_cmd: z.string().min(1).optional().openapi({ description: 'Left running in the snapshot' }),
    ready_cmd: z
      .string()
      .min(1)
      .optional()
      .openapi({ description: 'Exits 0 once the start command is ready' }),
    ready_timeout_sec: z.number().int().min(1).max(3600).optional(),
    healthcheck: z.string().min(1).optional().openapi({ description: 'Must exit 0 before the snapshot' }),
    kind: z.enum(['snapshot', 'image']).default('snapshot').openapi({
      description:
        '`snapshot`: memory and processes kept (the start command runs); `image`: the root filesystem only',
    }),
    vcpus: z.number().int().min(1).max(64).default(DEFAULT_SIZES.vcpus),
    memory_mb: z.number().int().min(128).max(262_144).default(DEFAULT_SIZES.memory_mb),
    disk_mb: z.number().int().min(256).max(1_048_576).default(DEFAULT_SIZES.disk_mb),
    tags: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be a tag such as v1 or latest'))
      .max(20)
      .optional(),
    skip_cache: z.boolean().default(false),
  })
  .openapi('CreateBuild');

const Build = z
  .object({
    id: z.uuid(),
    template_id: z.uuid(),
    template: z.string().optional(),
    status: z.enum(['waiting', 'building', 'ready', 'error', 'cancelled']),
    kind: z.enum(['snapshot', 'image']),
    vcpus: z.number().int(),
    memory_mb: z.number().int(),
    disk_mb: z.number().int(),
    tags: z.array(z.string()),
    skip_cache: z.boolean(),
    progress: z.object({
      steps: z.number().int(),
      done: z.number().int(),
      cached: z.number().int().openapi({ description: 'Steps reused from the cache' }),
      current: z.string().nullable(),
    }),
    reason: z
      .object({ step: z.string(), message: z.string(), log_tail: z.array(z.string()) })
      .nullable()
      .openapi({
        description: 'Why it failed: the step (`1`… the recipe lines that are steps, `base`, `finalize`)',
      }),
    host_id: z.uuid().nullable(),
    from: z.object({ template: z.string().optional(), image: z.string().optional() }).nullable(),
    created_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
  })
  .openapi('Build');

const LogEntry = z
  .object({
    at: z.string(),
    level: z.enum(['debug', 'info', 'warn', 'error']),
    step: z.string().nullable(),
    message: z.string(),
  })
  .openapi('BuildLogEntry');

const BuildIdParam = z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) });
const HashParam = z.object({
  hash: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 in hex')
    .openapi({ param: { name: 'hash', in: 'path' } }),
});
const LogsQuery = z.object({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
  level: z.enum(['debug', 'info', 'warn', 'error']).default('debug'),
});

function specOf(body: z.infer<typeof CreateBuild>): BuildSpec {
  if (body.from && body.from_image)
    throw badRequest('from_image', 'a build starts from `from` or `from_image`, not both');
  if (body.registry_credentials && !body.from_image)
    throw badRequest('registry_credentials', 'only for a build `from_image`');
  try {
    return {
      from: body.from_image
        ? {
            image: body.from_image,
            ...(body.registry_credentials ? { credentials: body.registry_credentials } : {}),
          }
        : { template: body.from ?? 'base' },
      steps: parseRecipe(body.recipe, body.context_hash),
      ...(body.start_cmd ? { startCmd: body.start_cmd } : {}),
      ...(body.ready_cmd ? { readyCmd: body.ready_cmd } : {}),
      ...(body.ready_timeout_sec ? { readyTimeoutSec: body.ready_timeout_sec } : {}),
      ...(body.healthcheck ? { healthcheck: body.healthcheck } : {}),
    };
  } catch (err) {
    if (err instanceof RecipeError) throw badRequest(`recipe[${err.line}]`, err.message);
    throw err;
  }
}

/**
 * Template builds through `/v1`: a team's (API key, its own templates) and the platform's
 * (`/v1/admin/builds`, administrators; `/v1/admin/*` is admin-only, see routes/admin.ts).
 */
export function buildRoutes(app: App, deps: ServerDeps): void {
  const { db } = deps;
  const service = { db, hosts: deps.hosts, logger: deps.logger, queue: deps.builds.queue };
  for (const path of ['/v1/builds', '/v1/builds/*']) app.use(path, requireTeamCaller(deps));

  const doors: {
    prefix: string;
    security: { [k: string]: string[] }[];
    tag: string;
    owner: (c: Context<Env>) => BuildOwner;
  }[] = [
    {
      prefix: '/v1/builds',
      security: apiKey,
      tag: 'builds',
      owner: (c) => ({ teamId: authed(c, 'teamId') }),
    },
    {
      prefix: '/v1/admin/builds',
      security: bearer,
      tag: 'admin',
      owner: (c) => ({ teamId: null, userId: authed(c, 'userId') }),
    },
  ];
  for (const { prefix, security, tag, owner } of doors) {
    const whose = prefix.includes('admin') ? 'a platform template' : "one of the team's templates";
    app.openapi(
      createRoute({
        method: 'put',
        path: `${prefix}/files/{hash}`,
        tags: [tag],
        summary: 'Upload the files COPY steps take from (a tar, gzip or not), under its SHA-256',
        security,
        request: {
          params: HashParam,
          body: {
            content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
          },
        },
        responses: {
          200: json(z.object({ hash: z.string(), bytes: z.number().int() }), 'Stored'),
          ...errors,
        },
      }),
      async (c) => {
        const { hash } = c.req.valid('param');
        const body = c.req.raw.body;
        if (!body) throw badRequest('body', 'the tar to store is missing');
        const { size } = await deps.builds.files.put(
          teamScope(owner(c).teamId),
          hash,
          Readable.fromWeb(body as WebReadableStream<Uint8Array>),
          { maxBytes: deps.uploadMaxBytes ?? 1024 ** 3, verify: true },
        );
        return c.json({ hash, bytes: size }, 200);
      },
    );

    app.openapi(
      createRoute({
        method: 'post',
        path: prefix,
        tags: [tag],
        summary: `Build ${whose} from a recipe (queued)`,
        security,
        request: { body: jsonBody(CreateBuild) },
        responses: { 202: json(Build, 'Queued'), ...errors },
      }),
      async (c) => {
        const body = c.req.valid('json');
        const who = owner(c);
        const spec = specOf(body);
        for (const step of spec.steps)
          if (step.type === 'copy' && !(await deps.builds.files.has(teamScope(who.teamId), step.filesHash)))
            throw badRequest('context_hash', `no files uploaded under ${step.filesHash}`);
        const row = await createBuild(
          service,
          who,
          {
            templateName: body.template,
            vcpus: body.vcpus,
            memoryMb: body.memory_mb,
            diskMb: body.disk_mb,
            tags: body.tags,
          },
          { spec, kind: body.kind, skipCache: body.skip_cache },
        );
        await audit(c, deps, { action: 'build.start', target: row.id, teamId: who.teamId });
        return c.json(buildView({ ...row, template_name: body.template }), 202);
      },
    );

    app.openapi(
      createRoute({
        method: 'get',
        path: prefix,
        tags: [tag],
        summary: 'Builds, newest first',
        security,
        request: { query: z.object({ template_id: z.uuid().optional() }) },
        responses: { 200: json(z.object({ builds: z.array(Build) }), 'Builds'), ...errors },
      }),
      async (c) => {
        const rows = await listBuilds(db, owner(c), { templateId: c.req.valid('query').template_id });
        return c.json({ builds: rows.map(buildView) }, 200);
      },
    );

    app.openapi(
      createRoute({
        method: 'get',
        path: `${prefix}/{id}`,
        tags: [tag],
        summary: 'A build: status, progress, why it failed',
        security,
        request: { params: BuildIdParam },
        responses: { 200: json(Build, 'The build'), ...errors },
      }),
      async (c) => {
        const row = await ownedBuild(db, owner(c), c.req.valid('param').id);
        const name = await db
          .selectFrom('templates')
          .select('name')
          .where('id', '=', row.template_id)
          .executeTakeFirst();
        return c.json(buildView({ ...row, template_name: name?.name }), 200);
      },
    );

    app.openapi(
      createRoute({
        method: 'get',
        path: `${prefix}/{id}/logs`,
        tags: [tag],
        summary: "A build's log lines (timestamped, with level and step), from an offset",
        security,
        request: { params: BuildIdParam, query: LogsQuery },
        responses: {
          200: json(z.object({ logs: z.array(LogEntry), next_offset: z.number().int() }), 'Log lines'),
          ...errors,
        },
      }),
      async (c) => {
        const row = await ownedBuild(db, owner(c), c.req.valid('param').id);
        const q = c.req.valid('query');
        const lines = await buildLogs(db, row.id, { offset: q.offset, limit: q.limit, minLevel: q.level });
        return c.json(
          {
            logs: lines.map((l) => ({
              at: l.at.toISOString(),
              level: l.level,
              step: l.step,
              message: l.message,
            })),
            next_offset: q.offset + lines.length,
          },
          200,
        );
      },
    );

    app.openapi(
      createRoute({
        method: 'post',
        path: `${prefix}/{id}/cancel`,
        tags: [tag],
        summary: 'Cancel a build (a running one stops within a second; its sandbox is destroyed)',
        security,
        request: { params: BuildIdParam },
        responses: { 200: json(Build, 'Cancelled, or being cancelled'), ...errors },
      }),
      async (c) => {
        const row = await cancelBuild(service, await ownedBuild(db, owner(c), c.req.valid('param').id));
        await audit(c, deps, { action: 'build.cancel', target: row.id, teamId: owner(c).teamId });
        return c.json(buildView(row), 200);
      },
    );
  }
}
