import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { clampTimeoutSec, MAX_TIMEOUT_SEC } from '@wrenn/core';
import type { Env, ServerDeps } from '../http/app-types.js';
import { PhaseTimes } from '../http/server-timing.js';
import { authed } from '../http/auth.js';
import { ApiError, notFound, optionalJsonBody } from '../http/errors.js';
import { ENV_VARS, NO_NUL, NUL_RULE, TEMPLATE_NAME } from '../http/schemas.js';
import { audit } from '../services/audit.js';
import { sandboxMetrics } from '../services/metrics-store.js';
import { listTeamSandboxes, ownedSandbox, type SandboxRow } from '../services/sandbox-access.js';
import {
  createSandbox,
  destroySandbox,
  pauseSandbox,
  resumeSandbox,
  sandboxInfo,
  setSandboxTimeout,
  updateSandboxNetwork,
} from '../services/sandbox-lifecycle.js';
import { sandboxNetwork } from '../services/network-policy.js';
import { TAG } from './template-spec.js';
import {
  detailView,
  makeCursor,
  metricView,
  parseCursor,
  parseMetadataFilter,
  sandboxIdParam,
  sandboxView,
} from './views.js';

const Metadata = z.record(z.string().refine(NO_NUL, NUL_RULE), z.string().refine(NO_NUL, NUL_RULE));
const AddressList = z.array(z.string().max(255)).max(256);
// The egress part of E2B's network settings. Egress proxies and per-domain header transforms are
// not Wrenn's: refused when asked for, never ignored (a request would fail open).
const Egress = {
  allowOut: AddressList.optional(),
  denyOut: AddressList.optional(),
  egressProxy: z.null().optional(),
  rules: z
    .record(z.string(), z.array(z.unknown()))
    .refine(
      (rules) => Object.keys(rules).length === 0,
      'per-domain transform rules are not supported by Wrenn',
    )
    .optional(),
};
const NetworkConfig = z.object({
  ...Egress,
  allowPublicTraffic: z.boolean().optional(),
  maskRequestHost: z.string().optional(),
  httpsPorts: z.array(z.number().int()).max(0, 'HTTPS ports are not supported by Wrenn').optional(),
});
const NetworkUpdate = z.object({ ...Egress, allow_internet_access: z.boolean().optional() });
// E2B's bodies carry many fields Wrenn does not act on (iam, mcp, volumes…): accepted and
// ignored (docs/e2b-compat.md says which), never refused.
const NewSandbox = z.object({
  templateID: z.string().default('base'),
  timeout: z.number().int().min(0).max(MAX_TIMEOUT_SEC).optional(),
  metadata: Metadata.optional(),
  envVars: ENV_VARS.optional(),
  secure: z.boolean().optional(),
  autoPause: z.boolean().optional(),
  autoResume: z.object({ enabled: z.boolean() }).optional(),
  allow_internet_access: z.boolean().optional(),
  network: NetworkConfig.optional(),
});
const Timeout = z.object({ timeout: z.number().int().optional() });
const ListQuery = z.object({
  state: z.string().optional(),
  metadata: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(100).default(100),
  nextToken: z.string().optional(),
  order: z.enum(['asc', 'desc']).optional(),
});

/** The team's sandbox named by the path's `:id`. */
export function sandboxOf(deps: ServerDeps, c: Context<Env>): Promise<SandboxRow> {
  return ownedSandbox(deps.db, authed(c, 'teamId'), sandboxIdParam(c.req.param('id')));
}

/** E2B's sandbox routes: create (v1 and v2), connect, resume, get, kill, timeout, pause, list, metrics. */
export function e2bSandboxRoutes(api: Hono<Env>, deps: ServerDeps): void {
  lifecycleRoutes(api, deps);
  readRoutes(api, deps);
}

/** Create, connect, resume, pause, kill, timeout. */
function lifecycleRoutes(api: Hono<Env>, deps: ServerDeps): void {
  for (const [path, defaultTimeout] of [
    ['/sandboxes', 15],
    ['/v2/sandboxes', 300],
  ] as const) {
    api.post(path, async (c) => {
      const body = NewSandbox.parse(await optionalJsonBody(c.req.raw));
      // `name`, `name:tag` (a built template's tagged build; `:default` is `name`) or an id.
      const template = body.templateID.replace(/:default$/, '');
      const [name, tag, ...rest] = template.split(':');
      if (
        !TEMPLATE_NAME.safeParse(name).success ||
        (tag !== undefined && !TAG.safeParse(tag).success) ||
        rest.length > 0
      )
        throw new ApiError(
          400,
          'invalid_argument',
          `templateID: no template ${JSON.stringify(body.templateID)}`,
        );
      const times = new PhaseTimes();
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
          network: sandboxNetwork(
            {
              allowOut: body.network?.allowOut,
              denyOut: body.network?.denyOut,
              allowInternet: body.allow_internet_access,
            },
            { allowOut: 'network.allowOut', denyOut: 'network.denyOut' },
          ),
          allowPublicTraffic: body.network?.allowPublicTraffic ?? true,
        },
        c.req.raw.signal,
        times,
      );
      await audit(c, deps, { action: 'sandbox.create', target: row.id, details: { template } });
      times.mark('audit');
      c.header('Server-Timing', times.header());
      return c.json(sandboxView(row, info, deps.tokens), 201);
    });

    // Connect: a running sandbox has its timeout extended (never shortened), a paused one resumes.
    api.post(`${path}/:id/connect`, async (c) => {
      const row = await sandboxOf(deps, c);
      const timeout = clampTimeoutSec(
        Timeout.parse((await optionalJsonBody(c.req.raw)) ?? {}).timeout ?? 300,
      );
      // Missing: its host is lost; it resumes from its copy on another host when there is one.
      if (row.status === 'paused' || row.status === 'missing') {
        const info = await resumeSandbox(deps, row.id, Math.max(timeout, row.timeout_sec));
        await audit(c, deps, { action: 'sandbox.resume', target: row.id });
        return c.json(sandboxView({ ...row, status: 'running' }, info, deps.tokens), 201);
      }
      if (row.status !== 'running')
        throw new ApiError(409, 'failed_precondition', `sandbox ${row.id} is ${row.status}`);
      if (timeout > row.timeout_sec && row.timeout_sec !== 0) await setSandboxTimeout(deps, row.id, timeout);
      return c.json(sandboxView(row, await sandboxInfo(deps, row.id), deps.tokens), 200);
    });
  }

  // E2B SDK 2.0–2.5's resume.
  api.post('/sandboxes/:id/resume', async (c) => {
    const row = await sandboxOf(deps, c);
    if (row.status !== 'paused' && row.status !== 'missing')
      throw new ApiError(409, 'failed_precondition', `sandbox ${row.id} is already running`);
    const timeout = Timeout.parse((await optionalJsonBody(c.req.raw)) ?? {}).timeout;
    const info = await resumeSandbox(
      deps,
      row.id,
      timeout === undefined ? undefined : clampTimeoutSec(timeout),
    );
    await audit(c, deps, { action: 'sandbox.resume', target: row.id });
    return c.json(sandboxView({ ...row, status: 'running' }, info, deps.tokens), 201);
  });

  // Replaces the egress settings (fields left out are cleared, as E2B's SDK says).
  api.put('/sandboxes/:id/network', async (c) => {
    const row = await sandboxOf(deps, c);
    const body = NetworkUpdate.parse((await optionalJsonBody(c.req.raw)) ?? {});
    const network = sandboxNetwork(
      { allowOut: body.allowOut, denyOut: body.denyOut, allowInternet: body.allow_internet_access },
      { allowOut: 'allowOut', denyOut: 'denyOut' },
    );
    await updateSandboxNetwork(deps, row.id, network);
    await audit(c, deps, { action: 'sandbox.network', target: row.id });
    return c.body(null, 204);
  });

  api.delete('/sandboxes/:id', async (c) => {
    const row = await sandboxOf(deps, c);
    await destroySandbox(deps, row.id);
    await audit(c, deps, { action: 'sandbox.kill', target: row.id });
    return c.body(null, 204);
  });

  api.post('/sandboxes/:id/timeout', async (c) => {
    const row = await sandboxOf(deps, c);
    // A paused sandbox has no clock running (E2B: not found; its SDK 2.0–2.5 then resumes it).
    if (row.status !== 'running') throw notFound('running sandbox', row.id);
    const { timeout } = Timeout.parse(await optionalJsonBody(c.req.raw));
    if (timeout === undefined) throw new ApiError(400, 'invalid_argument', 'timeout: is required');
    await setSandboxTimeout(deps, row.id, clampTimeoutSec(timeout));
    return c.body(null, 204);
  });

  api.post('/sandboxes/:id/pause', async (c) => {
    const times = new PhaseTimes();
    const row = await sandboxOf(deps, c);
    times.mark('lookup');
    if (row.status === 'paused')
      throw new ApiError(409, 'failed_precondition', `sandbox ${row.id} is already paused`);
    await pauseSandbox(deps, row.id, times);
    await audit(c, deps, { action: 'sandbox.pause', target: row.id });
    times.mark('audit');
    c.header('Server-Timing', times.header());
    return c.body(null, 204);
  });
}

/** Get, list, metrics. */
function readRoutes(api: Hono<Env>, deps: ServerDeps): void {
  api.get('/sandboxes/:id', async (c) => {
    const row = await sandboxOf(deps, c);
    const info = await sandboxInfo(deps, row.id);
    return c.json(
      { ...detailView(row, info), envdAccessToken: info?.envdAccessToken ?? '', domain: null },
      200,
    );
  });

  api.get('/v2/sandboxes', async (c) => {
    const query = ListQuery.parse(c.req.query());
    // `state=` (nothing named) lists what no `state` lists, not nothing.
    const named = (query.state ?? '').split(',').filter(Boolean);
    const states = named.length > 0 ? named : ['running', 'paused'];
    for (const s of states)
      if (s !== 'running' && s !== 'paused')
        throw new ApiError(400, 'invalid_argument', `state: unknown state ${JSON.stringify(s)}`);
    const rows = await listTeamSandboxes(deps.db, authed(c, 'teamId'), {
      statuses: states as ('running' | 'paused')[],
      metadata: query.metadata ? parseMetadataFilter(query.metadata) : undefined,
      after: query.nextToken ? parseCursor(query.nextToken) : undefined,
      order: query.order === 'asc' ? 'asc' : 'desc',
      limit: query.limit + 1,
    });
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
    const row = await sandboxOf(deps, c);
    const now = Date.now() / 1000;
    const start = Number(c.req.query('start') ?? now - 600);
    const end = Number(c.req.query('end') ?? now);
    if (!Number.isFinite(start) || !Number.isFinite(end))
      throw new ApiError(400, 'invalid_argument', 'start, end: must be unix seconds');
    const age = now - start;
    const points = await sandboxMetrics(deps, row, age <= 600 ? '10m' : age <= 7200 ? '2h' : '24h');
    const inWindow = points.filter((p) => {
      const t = new Date(p.time).getTime() / 1000;
      return t >= start && t <= end;
    });
    return c.json(inWindow.map(metricView), 200);
  });
}
