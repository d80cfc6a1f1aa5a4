import { createRoute, z } from '@hono/zod-openapi';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed, requireTeamCaller } from '../http/auth.js';
import { optionalJsonBody } from '../http/errors.js';
import { PhaseTimes } from '../http/server-timing.js';
import {
  apiKey,
  ENV_VARS,
  errors,
  json,
  jsonBody,
  LINUX_USER,
  NO_NUL,
  NUL_RULE,
  SANDBOX_STATUS,
  SandboxFields,
  SandboxIdParam,
  sandboxView,
  TEMPLATE_REF,
  TIMEOUT_SEC,
} from '../http/schemas.js';
import { audited } from '../services/audit.js';
import { statusFromAgent } from '../services/reconciler.js';
import { sandboxMetrics } from '../services/metrics-store.js';
import { listTeamSandboxes, ownedSandbox } from '../services/sandbox-access.js';
import {
  createSandbox,
  destroySandbox,
  pauseSandbox,
  resumeSandbox,
  setSandboxTimeout,
  updateSandboxNetwork,
} from '../services/sandbox-lifecycle.js';
import { sandboxNetwork } from '../services/network-policy.js';
import type { SessionTokens } from '../auth/tokens.js';

const Sandbox = SandboxFields.openapi('Sandbox');
const SandboxWithToken = SandboxFields.extend({
  traffic_access_token: z.string().nullable().openapi({
    description:
      'With `network.allow_public_traffic: false`: what requests to its ports through the proxy must carry in `e2b-traffic-access-token`',
  }),
}).openapi('SandboxWithToken');

const ADDRESS_LIST = z.array(z.string().max(255)).max(256);
const NetworkPolicy = z
  .strictObject({
    allow_internet: z
      .boolean()
      .optional()
      .openapi({ description: 'false: the same as `0.0.0.0/0` in `deny_out`' }),
    allow_out: ADDRESS_LIST.optional().openapi({
      description:
        'IPv4 addresses, CIDRs and domain names (`example.com`, `*.example.com`) let out even where `deny_out` refuses',
    }),
    deny_out: ADDRESS_LIST.optional().openapi({
      description: 'IPv4 addresses and CIDRs refused (`0.0.0.0/0`: all)',
    }),
    allow_public_traffic: z.boolean().optional().openapi({
      description: 'false: requests to its ports through the proxy need its traffic access token',
    }),
  })
  .openapi('NetworkPolicy');
type NetworkInput = z.infer<typeof NetworkPolicy>;

/** The lists of a `/v1` network object, checked (errors name `network.allow_out[2]`…). */
function networkFrom(body: NetworkInput, prefix: string) {
  return sandboxNetwork(
    { allowOut: body.allow_out, denyOut: body.deny_out, allowInternet: body.allow_internet },
    { allowOut: `${prefix}allow_out`, denyOut: `${prefix}deny_out` },
  );
}

/** A sandbox with its traffic token when it is private (only its team sees these). */
function withToken(row: Parameters<typeof sandboxView>[0] & { id: string }, tokens: SessionTokens) {
  return {
    ...sandboxView(row),
    traffic_access_token: row.allow_public_traffic === false ? tokens.trafficToken(row.id) : null,
  };
}

const CreateSandbox = z
  .strictObject({
    template: TEMPLATE_REF.default('base').openapi({
      description:
        "A platform template (like `base`), the name or id of one of the team's snapshots, or a built template (`name` or `name:tag`)",
    }),
    vcpus: z.number().int().min(1).max(64).optional(),
    memory_mb: z.number().int().min(128).max(262_144).optional(),
    disk_mb: z.number().int().min(256).max(1_048_576).optional(),
    timeout_sec: TIMEOUT_SEC.default(300),
    metadata: z
      .record(
        z.string().min(1).max(64).refine(NO_NUL, NUL_RULE),
        z.string().max(1024).refine(NO_NUL, NUL_RULE),
      )
      .default({}),
    env: ENV_VARS.default({}),
    network: NetworkPolicy.optional(),
  })
  .openapi('CreateSandbox');

const Exec = z
  .strictObject({
    cmd: z
      .string()
      .min(1)
      .openapi({ description: 'A shell command line, or the program when `args` is given' }),
    args: z.array(z.string()).default([]),
    env: ENV_VARS.default({}),
    cwd: z.string().startsWith('/').optional(),
    user: LINUX_USER.optional(),
    timeout_ms: z.number().int().min(1).max(86_400_000).default(60_000),
    stdin: z.string().optional(),
  })
  .openapi('Exec');

const ExecResult = z
  .object({ exit_code: z.number().int(), stdout: z.string(), stderr: z.string(), timed_out: z.boolean() })
  .openapi('ExecResult');

const MetricPointSchema = z
  .object({
    time: z.string(),
    cpu_used_pct: z.number().openapi({ description: 'Share of the sandbox’s vCPUs in use, 0–100' }),
    cpu_count: z.number().int(),
    mem_used_bytes: z.number().int(),
    mem_total_bytes: z.number().int(),
    disk_used_bytes: z.number().int(),
    disk_total_bytes: z.number().int(),
  })
  .openapi('MetricPoint');

const Timeout = z.strictObject({ timeout_sec: TIMEOUT_SEC });

export function sandboxRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db, hosts } = deps;
  app.use('/v1/sandboxes', requireTeamCaller(deps));
  app.use('/v1/sandboxes/*', requireTeamCaller(deps));

  const owned = (teamId: string, id: string) => ownedSandbox(db, teamId, id);

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/sandboxes',
      tags: ['sandboxes'],
      summary: 'Create a sandbox',
      security: apiKey,
      request: { body: jsonBody(CreateSandbox) },
      responses: { 201: json(SandboxWithToken, 'The running sandbox'), ...errors },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const network = body.network && networkFrom(body.network, 'network.');
      const times = new PhaseTimes();
      const { row } = await audited(
        c,
        deps,
        { action: 'sandbox.create', target: (made) => made.row.id, details: { template: body.template } },
        () =>
          createSandbox(
            deps,
            authed(c, 'teamId'),
            {
              template: body.template,
              vcpus: body.vcpus,
              memoryMb: body.memory_mb,
              diskMb: body.disk_mb,
              timeoutSec: body.timeout_sec,
              env: body.env,
              metadata: body.metadata,
              network,
              allowPublicTraffic: body.network?.allow_public_traffic ?? true,
            },
            c.req.raw.signal,
            times,
          ),
      );
      times.mark('audit');
      c.header('Server-Timing', times.header());
      return c.json(withToken(row, deps.tokens), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/sandboxes',
      tags: ['sandboxes'],
      summary: "The team's sandboxes",
      security: apiKey,
      request: {
        query: z.object({
          status: z.enum(SANDBOX_STATUS).optional(),
          metadata: z
            .string()
            .optional()
            .openapi({ description: '`key:value`; only sandboxes whose metadata has it' }),
        }),
      },
      responses: {
        200: json(z.object({ sandboxes: z.array(Sandbox) }), 'Sandboxes'),
        400: errors[400],
        401: errors[401],
      },
    }),
    async (c) => {
      const { status, metadata } = c.req.valid('query');
      const at = metadata?.indexOf(':') ?? -1;
      const rows = await listTeamSandboxes(db, authed(c, 'teamId'), {
        statuses: status ? [status] : undefined,
        metadata:
          metadata === undefined
            ? undefined
            : at < 0
              ? { [metadata]: '' }
              : { [metadata.slice(0, at)]: metadata.slice(at + 1) },
      });
      return c.json({ sandboxes: rows.map(sandboxView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/sandboxes/{id}',
      tags: ['sandboxes'],
      summary: 'A sandbox',
      security: apiKey,
      request: { params: SandboxIdParam },
      responses: {
        200: json(SandboxWithToken, 'The sandbox'),
        400: errors[400],
        401: errors[401],
        404: errors[404],
      },
    }),
    async (c) =>
      c.json(withToken(await owned(authed(c, 'teamId'), c.req.valid('param').id), deps.tokens), 200),
  );

  for (const method of ['put', 'patch'] as const) {
    app.openapi(
      createRoute({
        method,
        path: '/v1/sandboxes/{id}/network',
        tags: ['sandboxes'],
        summary:
          method === 'put'
            ? 'Replace the sandbox’s egress policy (lists left out are cleared)'
            : 'Change parts of the sandbox’s network settings (fields left out are kept)',
        description:
          'A running sandbox has the new policy in force when this answers (new connections; open ones carry on); a paused one gets it when it resumes. `allow_public_traffic` changes only when given.',
        security: apiKey,
        request: { params: SandboxIdParam, body: jsonBody(NetworkPolicy) },
        responses: { 200: json(SandboxWithToken, 'The sandbox'), ...errors },
      }),
      async (c) => {
        const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
        const body = c.req.valid('json');
        const before = row.network;
        const merged: NetworkInput =
          method === 'put'
            ? body
            : {
                allow_internet: body.allow_internet ?? before?.allow_internet ?? undefined,
                allow_out: body.allow_out ?? before?.allow_out,
                deny_out: body.deny_out ?? before?.deny_out,
              };
        const network = networkFrom(merged, '');
        await audited(c, deps, { action: 'sandbox.network', target: row.id }, async () => {
          await updateSandboxNetwork(deps, row.id, network);
          if (body.allow_public_traffic !== undefined) {
            await db
              .updateTable('sandboxes')
              .set({ allow_public_traffic: body.allow_public_traffic, updated_at: new Date() })
              .where('id', '=', row.id)
              .execute();
            // The proxy's cached view of the sandbox holds the old setting.
            deps.sandboxReleased?.(row.id);
          }
        });
        return c.json(withToken(await owned(authed(c, 'teamId'), row.id), deps.tokens), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/sandboxes/{id}',
      tags: ['sandboxes'],
      summary: 'Destroy a sandbox and everything it holds',
      security: apiKey,
      request: { params: SandboxIdParam },
      responses: { 204: { description: 'Destroyed' }, 400: errors[400], 401: errors[401], 404: errors[404] },
    }),
    async (c) => {
      const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
      await audited(c, deps, { action: 'sandbox.kill', target: row.id }, () => destroySandbox(deps, row.id));
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/sandboxes/{id}/exec',
      tags: ['sandboxes'],
      summary: 'Run a command to completion',
      security: apiKey,
      request: { params: SandboxIdParam, body: jsonBody(Exec) },
      responses: { 200: json(ExecResult, 'Its exit code and output'), ...errors },
    }),
    async (c) => {
      const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
      const body = c.req.valid('json');
      const agent = await hosts.agent(row.host_id);
      const res = await agent.exec(
        {
          sandboxId: row.id,
          command: {
            cmd: body.cmd,
            args: body.args,
            env: body.env,
            cwd: body.cwd ?? '',
            user: body.user ?? '',
            timeoutMs: body.timeout_ms,
            stdin: body.stdin === undefined ? new Uint8Array() : Buffer.from(body.stdin),
          },
        },
        { signal: c.req.raw.signal },
      );
      const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
      return c.json(
        {
          exit_code: res.exitCode,
          stdout: text(res.stdout),
          stderr: text(res.stderr),
          timed_out: res.timedOut,
        },
        200,
      );
    },
  );

  for (const action of ['pause', 'resume'] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/sandboxes/{id}/${action}`,
        tags: ['sandboxes'],
        summary:
          action === 'pause'
            ? 'Checkpoint the sandbox to disk and free its resources'
            : 'Resume a paused sandbox',
        security: apiKey,
        description:
          action === 'resume'
            ? 'An optional JSON body `{ "timeout_sec": n }` sets a new inactivity timeout; without it the sandbox keeps its own.'
            : undefined,
        request: { params: SandboxIdParam },
        responses: { 200: json(Sandbox, 'The sandbox'), ...errors },
      }),
      async (c) => {
        // A pause answers where its time went (a resume does not yet).
        const times = action === 'pause' ? new PhaseTimes() : undefined;
        const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
        times?.mark('lookup');
        const timeoutSec = action === 'resume' ? await resumeTimeout(c.req.raw) : undefined;
        const sandbox = await audited(c, deps, { action: `sandbox.${action}`, target: row.id }, () =>
          action === 'pause' ? pauseSandbox(deps, row.id, times) : resumeSandbox(deps, row.id, timeoutSec),
        );
        if (times) {
          times.mark('audit');
          c.header('Server-Timing', times.header());
        }
        const status = statusFromAgent(sandbox.status);
        // A resume may have moved it (its host draining, full, or lost: it ran from its copy).
        const now = action === 'resume' ? await owned(authed(c, 'teamId'), row.id) : row;
        return c.json(sandboxView({ ...now, status, timeout_sec: sandbox.timeoutSec }), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/sandboxes/{id}/metrics',
      tags: ['sandboxes'],
      summary: 'CPU, memory and disk use: raw samples (10m), 30 s averages (2h) or 5 min averages (24h)',
      security: apiKey,
      request: {
        params: SandboxIdParam,
        query: z.object({ range: z.enum(['10m', '2h', '24h']).default('10m') }),
      },
      responses: {
        200: json(z.object({ metrics: z.array(MetricPointSchema) }), 'Samples, oldest first'),
        ...errors,
      },
    }),
    async (c) => {
      const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
      const { range } = c.req.valid('query');
      return c.json({ metrics: await sandboxMetrics(deps, row, range) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/sandboxes/{id}/ping',
      tags: ['sandboxes'],
      summary: 'Count as activity (resets the inactivity timeout)',
      security: apiKey,
      request: { params: SandboxIdParam },
      responses: { 204: { description: 'Noted' }, ...errors },
    }),
    async (c) => {
      const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
      await (await hosts.agent(row.host_id)).pingSandbox({ sandboxId: row.id });
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/v1/sandboxes/{id}/timeout',
      tags: ['sandboxes'],
      summary: 'Set the inactivity timeout (0 = never)',
      security: apiKey,
      request: { params: SandboxIdParam, body: jsonBody(Timeout) },
      responses: { 204: { description: 'Set' }, ...errors },
    }),
    async (c) => {
      const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
      await setSandboxTimeout(deps, row.id, c.req.valid('json').timeout_sec);
      return c.body(null, 204);
    },
  );
}

/** Resume's body is optional (an empty POST is fine); when present it must be `{ timeout_sec }`. */
async function resumeTimeout(req: Request): Promise<number | undefined> {
  const body = await optionalJsonBody(req);
  return body === undefined ? undefined : Timeout.partial().parse(body).timeout_sec;
}
