import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { ENVD_VERSION, type hostagent } from '@wrenn/contracts';
import type { Env, ServerDeps } from '../http/app-types.js';
import { authed, requireApiKey } from '../http/auth.js';
import { ApiError, notFound, optionalJsonBody } from '../http/errors.js';
import { e2bApiError } from './errors.js';
import { clampTimeoutSec, isSandboxId, MAX_TIMEOUT_SEC, SANDBOX_ID_RULE } from '@wrenn/core';
import { ENV_VARS, TEMPLATE_NAME } from '../http/schemas.js';
import {
  AGENT_METRICS_RANGE,
  pointFromAgent,
  storedMetrics,
  type MetricPoint,
} from '../services/metrics-store.js';
import { ownedSandbox } from '../services/sandbox-access.js';
import { createSandbox, destroySandbox, pauseSandbox, resumeSandbox } from '../services/sandbox-lifecycle.js';
import { createTeamSnapshot, deleteTeamSnapshot } from '../services/templates.js';

/** E2B's legacy constant; its Python SDK requires the field. */
const CLIENT_ID = '6532622b';

type Row = Awaited<ReturnType<typeof ownedSandbox>>;

const Metadata = z.record(z.string(), z.string());
// E2B's bodies carry many fields Wrenn does not act on (network, iam, mcp, volumes…): accepted and
// ignored (docs/e2b-compat.md says which), never refused.
const NewSandbox = z.object({
  templateID: z.string().default('base'),
  timeout: z.number().int().min(0).max(MAX_TIMEOUT_SEC).optional(),
  metadata: Metadata.optional(),
  envVars: ENV_VARS.optional(),
  secure: z.boolean().optional(),
  autoPause: z.boolean().optional(),
  autoResume: z.object({ enabled: z.boolean() }).optional(),
});
const Timeout = z.object({ timeout: z.number().int().optional() });
const SnapshotRequest = z.object({ name: TEMPLATE_NAME.optional() });
const ForkRequest = z.object({
  count: z.number().int().min(1).max(20).default(1),
  timeout: z.number().int().min(1).max(MAX_TIMEOUT_SEC).default(15),
});

/**
 * E2B's control-plane API, as its SDKs call it (../shared/E2B_COMPAT.md): `E2B_API_URL` pointed at the
 * Wrenn server and a Wrenn API key as `E2B_API_KEY` are enough. Errors are E2B's `{code, message}`
 * with `code` equal to the HTTP status (the JS SDK reads it from the body).
 */
export function buildE2bApi(deps: ServerDeps): Hono<Env> {
  const { db, agent } = deps;
  const api = new Hono<Env>();
  api.use('*', requireApiKey(deps));

  api.onError((err, c) => {
    const known = e2bApiError(err);
    if (!known)
      deps.logger.error({ err, method: c.req.method, path: c.req.path }, 'internal error (E2B API)');
    const status = known?.status ?? 500;
    return c.json({ code: status, message: known?.message ?? 'internal error; see the server log' }, status);
  });
  api.notFound((c) => c.json({ code: 404, message: `no route for ${c.req.method} ${c.req.path}` }, 404));

  async function sandboxOf(c: Context<Env>): Promise<Row> {
    return ownedSandbox(db, authed(c, 'teamId'), sandboxIdParam(c.req.param('id')));
  }

  async function agentInfo(id: string): Promise<hostagent.Sandbox | undefined> {
    return (await agent.getSandbox({ sandboxId: id }).catch(() => undefined))?.sandbox;
  }

  const sandboxView = (row: Row, info: hostagent.Sandbox | undefined) => ({
    sandboxID: row.id,
    templateID: row.template,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    envdAccessToken: info?.envdAccessToken ?? '',
    trafficAccessToken: null,
    domain: null,
  });

  const detailView = (row: Row, info: hostagent.Sandbox | undefined) => {
    const startedAt = new Date(row.created_at);
    const lastActive = info?.lastActiveAt ? timestampDate(info.lastActiveAt) : new Date(row.updated_at);
    const paused = row.status === 'paused';
    const endAt = paused
      ? new Date(row.updated_at)
      : new Date(lastActive.getTime() + (row.timeout_sec || MAX_TIMEOUT_SEC) * 1000);
    return {
      sandboxID: row.id,
      templateID: row.template,
      clientID: CLIENT_ID,
      startedAt: startedAt.toISOString(),
      endAt: endAt.toISOString(),
      cpuCount: row.vcpus,
      memoryMB: row.memory_mb,
      diskSizeMB: row.disk_mb,
      envdVersion: ENVD_VERSION,
      state: paused ? 'paused' : 'running',
      metadata: row.metadata,
      lifecycle: { onTimeout: row.on_timeout, autoResume: row.auto_resume },
    };
  };

  for (const [path, defaultTimeout] of [
    ['/sandboxes', 15],
    ['/v2/sandboxes', 300],
  ] as const) {
    api.post(path, async (c) => {
      const body = NewSandbox.parse(await optionalJsonBody(c.req.raw));
      const template = body.templateID.replace(/:default$/, '');
      if (!TEMPLATE_NAME.safeParse(template).success)
        throw new ApiError(
          400,
          'invalid_argument',
          `templateID: no template ${JSON.stringify(body.templateID)}`,
        );
      const { row, info } = await createSandbox(
        deps,
        authed(c, 'teamId'),
        {
          template,
          timeoutSec: body.timeout || defaultTimeout,
          metadata: body.metadata ?? {},
          env: body.envVars ?? {},
          onTimeout: body.autoPause ? 'pause' : 'kill',
          autoResume: body.autoResume?.enabled ?? false,
        },
        c.req.raw.signal,
      );
      return c.json(sandboxView(row, info), 201);
    });

    // Connect: a running sandbox has its timeout extended (never shortened), a paused one resumes.
    api.post(`${path}/:id/connect`, async (c) => {
      const row = await sandboxOf(c);
      const timeout = clampTimeoutSec(
        Timeout.parse((await optionalJsonBody(c.req.raw)) ?? {}).timeout ?? 300,
      );
      if (row.status === 'paused') {
        const info = await resumeSandbox(deps, row.id, Math.max(timeout, row.timeout_sec));
        return c.json(sandboxView({ ...row, status: 'running' }, info), 201);
      }
      if (row.status !== 'running')
        throw new ApiError(409, 'failed_precondition', `sandbox ${row.id} is ${row.status}`);
      if (timeout > row.timeout_sec && row.timeout_sec !== 0) await setTimeoutSec(row.id, timeout);
      return c.json(sandboxView(row, await agentInfo(row.id)), 200);
    });
  }

  // E2B SDK 2.0–2.5's resume.
  api.post('/sandboxes/:id/resume', async (c) => {
    const row = await sandboxOf(c);
    if (row.status !== 'paused')
      throw new ApiError(409, 'failed_precondition', `sandbox ${row.id} is already running`);
    const timeout = Timeout.parse((await optionalJsonBody(c.req.raw)) ?? {}).timeout;
    const info = await resumeSandbox(
      deps,
      row.id,
      timeout === undefined ? undefined : clampTimeoutSec(timeout),
    );
    return c.json(sandboxView({ ...row, status: 'running' }, info), 201);
  });

  api.get('/sandboxes/:id', async (c) => {
    const row = await sandboxOf(c);
    const info = await agentInfo(row.id);
    return c.json(
      { ...detailView(row, info), envdAccessToken: info?.envdAccessToken ?? '', domain: null },
      200,
    );
  });

  api.delete('/sandboxes/:id', async (c) => {
    const row = await sandboxOf(c);
    await destroySandbox(deps, row.id);
    return c.body(null, 204);
  });

  api.post('/sandboxes/:id/timeout', async (c) => {
    const row = await sandboxOf(c);
    // A paused sandbox has no clock running (E2B: not found; its SDK 2.0–2.5 then resumes it).
    if (row.status !== 'running') throw notFound('running sandbox', row.id);
    const { timeout } = Timeout.parse(await optionalJsonBody(c.req.raw));
    if (timeout === undefined) throw new ApiError(400, 'invalid_argument', 'timeout: is required');
    await setTimeoutSec(row.id, clampTimeoutSec(timeout));
    return c.body(null, 204);
  });

  api.post('/sandboxes/:id/pause', async (c) => {
    const row = await sandboxOf(c);
    if (row.status === 'paused')
      throw new ApiError(409, 'failed_precondition', `sandbox ${row.id} is already paused`);
    await pauseSandbox(deps, row.id);
    return c.body(null, 204);
  });

  api.get('/v2/sandboxes', async (c) => {
    const teamId = authed(c, 'teamId');
    const query = ListQuery.parse(c.req.query());
    const states = (query.state ?? 'running,paused').split(',').filter(Boolean);
    for (const s of states)
      if (s !== 'running' && s !== 'paused')
        throw new ApiError(400, 'invalid_argument', `state: unknown state ${JSON.stringify(s)}`);
    const filter = query.metadata ? parseMetadataFilter(query.metadata) : {};
    const cursor = query.nextToken ? parseCursor(query.nextToken) : undefined;
    const desc = query.order !== 'asc';
    let q = db
      .selectFrom('sandboxes')
      .selectAll()
      .where('team_id', '=', teamId)
      .where('status', 'in', states as ('running' | 'paused')[]);
    if (Object.keys(filter).length)
      q = q.where((eb) =>
        eb.and(Object.entries(filter).map(([k, v]) => eb(eb.ref('metadata', '->>').key(k), '=', v))),
      );
    if (cursor)
      q = q.where((eb) =>
        eb.or([
          eb('created_at', desc ? '<' : '>', cursor.time),
          eb.and([eb('created_at', '=', cursor.time), eb('id', desc ? '<' : '>', cursor.id)]),
        ]),
      );
    const rows = await q
      .orderBy('created_at', desc ? 'desc' : 'asc')
      .orderBy('id', desc ? 'desc' : 'asc')
      .limit(query.limit + 1)
      .execute();
    const page = rows.slice(0, query.limit);
    if (rows.length > query.limit) {
      const last = page.at(-1)!;
      c.header('X-Next-Token', makeCursor(new Date(last.created_at), last.id));
    }
    return c.json(
      page.map((row) => detailView(row, undefined)),
      200,
    );
  });

  api.get('/sandboxes/:id/metrics', async (c) => {
    const row = await sandboxOf(c);
    const now = Date.now() / 1000;
    const start = Number(c.req.query('start') ?? now - 600);
    const end = Number(c.req.query('end') ?? now);
    if (!Number.isFinite(start) || !Number.isFinite(end))
      throw new ApiError(400, 'invalid_argument', 'start, end: must be unix seconds');
    const age = now - start;
    const range = age <= 600 ? '10m' : age <= 7200 ? '2h' : '24h';
    const points: MetricPoint[] =
      row.status === 'paused'
        ? await storedMetrics(db, row.id, range)
        : (
            await agent.getSandboxMetrics({
              sandboxId: row.id,
              range: AGENT_METRICS_RANGE[range],
            })
          ).samples.map(pointFromAgent);
    return c.json(
      points
        .filter((p) => {
          const t = new Date(p.time).getTime() / 1000;
          return t >= start && t <= end;
        })
        .map((p) => ({
          timestamp: p.time,
          timestampUnix: Math.floor(new Date(p.time).getTime() / 1000),
          cpuCount: p.cpu_count,
          cpuUsedPct: p.cpu_used_pct,
          memUsed: p.mem_used_bytes,
          memTotal: p.mem_total_bytes,
          memCache: 0,
          diskUsed: p.disk_used_bytes,
          diskTotal: p.disk_total_bytes,
        })),
      200,
    );
  });

  api.post('/sandboxes/:id/snapshots', async (c) => {
    const row = await sandboxOf(c);
    const { name } = SnapshotRequest.parse((await optionalJsonBody(c.req.raw)) ?? {});
    const snapshot = await createTeamSnapshot(
      deps,
      authed(c, 'teamId'),
      row.id,
      name ?? `snapshot-${Date.now().toString(36)}`,
      c.req.raw.signal,
    );
    return c.json({ snapshotID: snapshot.id, names: [snapshot.name] }, 201);
  });

  // Fork: one snapshot (the source is paused for the copy and resumed), `count` sandboxes restored
  // from it, each reported on its own; the snapshot goes after (restored sandboxes do not need it).
  api.post('/sandboxes/:id/fork', async (c) => {
    const row = await sandboxOf(c);
    const teamId = authed(c, 'teamId');
    const body = ForkRequest.parse((await optionalJsonBody(c.req.raw)) ?? {});
    const snapshot = await createTeamSnapshot(
      deps,
      teamId,
      row.id,
      `fork-${row.id}-${Date.now().toString(36)}`,
    );
    try {
      const results = await Promise.allSettled(
        Array.from({ length: body.count }, async () => {
          const made = await createSandbox(deps, teamId, {
            template: snapshot.id,
            timeoutSec: clampTimeoutSec(body.timeout),
            metadata: row.metadata,
            env: {},
            onTimeout: 'kill',
          });
          await db
            .updateTable('sandboxes')
            .set({ template: row.template })
            .where('id', '=', made.row.id)
            .execute();
          return sandboxView({ ...made.row, template: row.template }, made.info);
        }),
      );
      return c.json(
        results.map((r) => {
          if (r.status === 'fulfilled') return { sandbox: r.value };
          const err = e2bApiError(r.reason);
          return { error: { code: err?.status ?? 500, message: err?.message ?? 'the fork failed to start' } };
        }),
        201,
      );
    } finally {
      await deleteTeamSnapshot(deps, snapshot.id).catch((err: unknown) =>
        deps.logger.warn({ err, snapshot: snapshot.id }, 'could not delete a fork snapshot'),
      );
    }
  });

  api.get('/snapshots', async (c) => {
    let q = db
      .selectFrom('templates')
      .select(['id', 'name'])
      .where('team_id', '=', authed(c, 'teamId'))
      .where('kind', '=', 'snapshot');
    const sandboxId = c.req.query('sandboxID');
    if (sandboxId) q = q.where('source_sandbox_id', '=', sandboxId);
    const name = c.req.query('name');
    if (name) q = q.where('name', '=', name);
    const rows = await q.orderBy('created_at').execute();
    return c.json(
      rows.map((r) => ({ snapshotID: r.id, names: [r.name] })),
      200,
    );
  });

  api.delete('/templates/:id', async (c) => {
    const id = c.req.param('id');
    const row = z.uuid().safeParse(id).success
      ? await db
          .selectFrom('templates')
          .select('id')
          .where('id', '=', id)
          .where('team_id', '=', authed(c, 'teamId'))
          .executeTakeFirst()
      : undefined;
    if (!row) throw notFound('template', id);
    await deleteTeamSnapshot(deps, row.id);
    return c.body(null, 204);
  });

  async function setTimeoutSec(id: string, timeoutSec: number): Promise<void> {
    await agent.setSandboxTimeout({ sandboxId: id, timeoutSec });
    await db
      .updateTable('sandboxes')
      .set({ timeout_sec: timeoutSec, updated_at: new Date() })
      .where('id', '=', id)
      .execute();
  }

  return api;
}

/** The paths this API serves (the server routes only these to it). */
export function isE2bApiPath(path: string): boolean {
  return /^\/(v2\/)?sandboxes(\/|$)|^\/snapshots$|^\/templates\//.test(path);
}

const ListQuery = z.object({
  state: z.string().optional(),
  metadata: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(100).default(100),
  nextToken: z.string().optional(),
  order: z.enum(['asc', 'desc']).optional(),
});

/** `<id>` or E2B's legacy `<id>-<clientID>`. */
function sandboxIdParam(raw: string | undefined): string {
  const id = (raw ?? '').split('-')[0]!;
  if (!isSandboxId(id)) throw new ApiError(400, 'invalid_argument', `sandboxID: ${SANDBOX_ID_RULE}`);
  return id;
}

/** E2B's JS SDK encodes the filter twice over (`a%3Db%252520c` for `{a: "b c"}`). */
function parseMetadataFilter(raw: string): Record<string, string> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new ApiError(400, 'invalid_argument', 'metadata: malformed filter');
  }
  return Object.fromEntries(new URLSearchParams(decoded));
}

function makeCursor(time: Date, id: string): string {
  return Buffer.from(`${time.toISOString()}__${id}`).toString('base64url');
}

function parseCursor(token: string): { time: Date; id: string } {
  const [time, id] = Buffer.from(token, 'base64url').toString('utf8').split('__');
  const date = new Date(time ?? '');
  if (!id || Number.isNaN(date.getTime()))
    throw new ApiError(400, 'invalid_argument', 'nextToken: invalid cursor');
  return { time: date, id };
}
