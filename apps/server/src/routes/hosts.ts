import { createRoute, z } from '@hono/zod-openapi';
import { hostagent } from '@wrenn/contracts';
import { parseHostPort } from '@wrenn/core';
import type { Context, MiddlewareHandler } from 'hono';
import type { App, Env, ServerDeps } from '../http/app-types.js';
import { authed, requireUser } from '../http/auth.js';
import { unauthorized } from '../http/errors.js';
import { bearer, errors, json, jsonBody, SANDBOX_ID } from '../http/schemas.js';
import { audit, audited } from '../services/audit.js';
import { deleteHost, hostsVisibleTo, newHost, type HostRow } from '../services/fleet/host-admin.js';
import { recordHeartbeat } from '../services/fleet/heartbeat.js';
import { isP256PublicKey } from '../services/fleet/host-credentials.js';

const HostFields = z.object({
  id: z.uuid(),
  kind: z.enum(['platform', 'byoc']),
  team_id: z.uuid().nullable(),
  status: z.enum(['pending', 'online', 'unreachable', 'deleted']),
  draining: z.boolean().openapi({ description: 'Out of placement; its sandboxes were moved away' }),
  is_static: z
    .boolean()
    .openapi({ description: "The server's own agent (WRENN_AGENT_URL): no registration, no heartbeats" }),
  address: z.string().nullable(),
  arch: z.string().nullable(),
  agent_version: z.string().nullable(),
  capacity: z
    .object({ cpu_cores: z.number().int(), memory_mb: z.number().int(), disk_mb: z.number().int() })
    .nullable(),
  load: z.object({ cpu_pct: z.number(), memory_used_mb: z.number(), disk_used_mb: z.number() }).nullable(),
  running_count: z.number().int().openapi({ description: 'Running sandboxes, as its last heartbeat said' }),
  paused_count: z.number().int().openapi({ description: 'Paused sandboxes, as its last heartbeat said' }),
  sandbox_count: z
    .number()
    .int()
    .openapi({ description: 'Sandboxes the control plane places there (not stopped)' }),
  last_heartbeat_at: z.string().nullable(),
  registered_at: z.string().nullable(),
  created_at: z.string(),
});
const Host = HostFields.openapi('Host');

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

function hostView(r: HostRow): z.infer<typeof HostFields> {
  return {
    id: r.id,
    kind: r.kind,
    team_id: r.team_id,
    status: r.status,
    draining: r.draining,
    is_static: r.is_static,
    address: r.address,
    arch: r.arch,
    agent_version: r.agent_version,
    capacity:
      r.cpu_cores === null || r.memory_mb === null || r.disk_mb === null
        ? null
        : { cpu_cores: r.cpu_cores, memory_mb: r.memory_mb, disk_mb: r.disk_mb },
    load: r.load,
    running_count: r.running_count,
    paused_count: r.paused_count,
    sandbox_count: Number(r.sandbox_count ?? 0),
    last_heartbeat_at: iso(r.last_heartbeat_at),
    registered_at: iso(r.registered_at),
    created_at: new Date(r.created_at).toISOString(),
  };
}
const AdminHost = HostFields.extend({ team_name: z.string().nullable() }).openapi('AdminHost');
/** How long GET /v1/admin/hosts waits for the static host's agent before calling it unreachable. */
const STATIC_PROBE_TIMEOUT_MS = 2000;

const HostIdParam = z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) });

const NewHost = z
  .strictObject({
    team_id: z.uuid().optional().openapi({
      description:
        "The BYOC team the host is for; without it, an administrator's new host is a platform host, an owner's is their BYOC team's",
    }),
  })
  .openapi('NewHost');

const ADDRESS = z.string().refine(
  (a) => {
    try {
      parseHostPort(a);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be host:port (an IPv6 address in brackets)' },
);
const MB = z.number().int().min(1);

const Register = z
  .strictObject({
    registration_token: z.string().min(1),
    arch: z.string().min(1).max(32),
    cpu_cores: z.number().int().min(1).max(4096),
    memory_mb: MB,
    disk_mb: MB,
    address: ADDRESS.openapi({ description: 'host:port the agent listens on' }),
    public_key: z
      .string()
      .refine(isP256PublicKey, { message: 'must be an ECDSA P-256 public key (SPKI PEM)' }),
    agent_version: z.string().max(64).default(''),
  })
  .openapi('HostRegistration');

const Credentials = z
  .object({
    host_id: z.uuid(),
    access_token: z.string().openapi({ description: 'Host JWT (ES256, 7 days): Authorization: Bearer' }),
    refresh_token: z.string().openapi({ description: '60 days; rotated by POST /v1/hosts/refresh' }),
    certificate: z.string().openapi({ description: "The host's certificate (PEM, 30 days)" }),
    ca_certificate: z.string().openapi({ description: "The cluster CA's certificate (PEM)" }),
    heartbeat_interval_sec: z.number().int(),
  })
  .openapi('HostCredentials');

const Refreshed = z
  .object({ access_token: z.string(), refresh_token: z.string(), certificate: z.string() })
  .openapi('HostRefreshed');

const Heartbeat = z
  .strictObject({
    capacity: z.strictObject({ cpu_cores: z.number().int().min(1), memory_mb: MB, disk_mb: MB }),
    load: z.strictObject({
      cpu_pct: z.number().min(0),
      memory_used_mb: z.number().min(0),
      disk_used_mb: z.number().min(0),
    }),
    sandboxes: z
      .array(
        z.strictObject({
          id: SANDBOX_ID,
          status: z.enum(['running', 'paused', 'pending', 'stopped', 'error']),
          paused_unsupervised: z.boolean().optional().openapi({
            description:
              'The agent paused it because heartbeats failed (PauseAll); the control plane resumes it',
          }),
        }),
      )
      .max(100_000),
  })
  .openapi('HostHeartbeat');

const noAuth = { 400: errors[400], 401: errors[401], 500: errors[500] };
const hostSecurity = [{ hostToken: [] }];

/**
 * The fleet (docs/fleet.md): adding hosts (a one-time token), what agents call (register, refresh,
 * heartbeat), listing and deleting hosts.
 */
export function hostRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db, fleet } = deps;
  const { credentials } = fleet;
  const heartbeatSec = fleet.config.heartbeatSec;
  // The agents' own routes carry no user credentials; the rest need a user.
  const agentPaths = new Set(['/v1/hosts/register', '/v1/hosts/refresh', '/v1/hosts/heartbeat']);
  const user: MiddlewareHandler<Env> = requireUser(deps);
  app.use('/v1/hosts', user);
  const userUnlessAgent: MiddlewareHandler<Env> = (c, next) =>
    agentPaths.has(c.req.path) ? next() : user(c, next);
  app.use('/v1/hosts/*', userUnlessAgent);
  // /v1/admin/hosts: admins only, by adminRoutes' middleware for /v1/admin/*.

  app.openAPIRegistry.registerComponent('securitySchemes', 'hostToken', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A host JWT (POST /v1/hosts/register or /refresh)',
  });

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts',
      tags: ['hosts'],
      summary:
        'Add a host: a platform host (admins) or a host of a BYOC team (its owners); returns its one-time registration token',
      security: bearer,
      request: { body: jsonBody(NewHost) },
      responses: {
        201: json(
          z.object({ host: Host, registration_token: z.string() }),
          'The pending host and its token (shown once, 1 hour, single use)',
        ),
        ...errors,
      },
    }),
    async (c) => {
      const teamId = c.req.valid('json').team_id ?? null;
      const { host, token } = await audited(
        c,
        deps,
        { action: 'host.create', teamId, target: (made) => made.host.id },
        () => newHost(deps, authed(c, 'userId'), teamId ?? undefined),
      );
      return c.json({ host: hostView(host), registration_token: token }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts/register',
      tags: ['hosts'],
      summary: 'An agent registers with its one-time token: its host id, tokens and certificate',
      request: { body: jsonBody(Register) },
      responses: { 200: json(Credentials, 'The host’s credentials'), ...noAuth },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const hostId = await credentials.consumeRegistrationToken(body.registration_token);
      const certificate = await credentials.hostCertificate(hostId, body.public_key, body.address);
      await db
        .updateTable('hosts')
        .set({
          status: 'online',
          // The static host registering (`wrenn up`'s agent taking it over) becomes a registered one.
          is_static: false,
          address: body.address,
          arch: body.arch,
          agent_version: body.agent_version,
          cpu_cores: body.cpu_cores,
          memory_mb: body.memory_mb,
          disk_mb: body.disk_mb,
          public_key: body.public_key,
          registered_at: new Date(),
          last_heartbeat_at: new Date(),
        })
        .where('id', '=', hostId)
        .execute();
      fleet.directory.drop(hostId);
      const team = await db.selectFrom('hosts').select('team_id').where('id', '=', hostId).executeTakeFirst();
      await audit(c, deps, {
        action: 'host.register',
        target: hostId,
        teamId: team?.team_id ?? null,
        details: { address: body.address, agent_version: body.agent_version },
      });
      return c.json(
        {
          host_id: hostId,
          access_token: await credentials.issueJwt(hostId),
          refresh_token: await credentials.newRefreshToken(hostId),
          certificate,
          ca_certificate: credentials.keys.ca.certPem,
          heartbeat_interval_sec: heartbeatSec,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts/refresh',
      tags: ['hosts'],
      summary: 'An agent trades its refresh token for a new one, a new host JWT and a renewed certificate',
      description:
        'Issue-then-revoke: the new token is stored before the old one is marked used. A used token presented again revokes its whole family (401).',
      request: {
        body: jsonBody(z.strictObject({ refresh_token: z.string().min(1) }).openapi('HostRefresh')),
      },
      responses: { 200: json(Refreshed, 'New credentials'), ...noAuth },
    }),
    async (c) => {
      const { hostId, refreshToken } = await credentials.rotateRefreshToken(
        c.req.valid('json').refresh_token,
      );
      const host = await db
        .selectFrom('hosts')
        .select(['public_key', 'address'])
        .where('id', '=', hostId)
        .executeTakeFirstOrThrow();
      if (!host.public_key || !host.address) throw unauthorized('refresh_token: the host never registered');
      return c.json(
        {
          access_token: await credentials.issueJwt(hostId),
          refresh_token: refreshToken,
          certificate: await credentials.hostCertificate(hostId, host.public_key, host.address),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts/heartbeat',
      tags: ['hosts'],
      summary: 'An agent reports its capacity, load and sandboxes (Authorization: Bearer <host JWT>)',
      description: `Every heartbeat_interval_sec (${heartbeatSec} s). An expired or invalid JWT is 401: refresh, then retry. The host is reconciled from its list: missing sandboxes it holds get their state back, missing ones it lacks are stopped, unknown ones are destroyed on it.`,
      security: hostSecurity,
      request: { body: jsonBody(Heartbeat) },
      responses: { 200: json(z.object({ heartbeat_interval_sec: z.number().int() }), 'Noted'), ...noAuth },
    }),
    async (c) => {
      const hostId = await hostFromJwt(c);
      const body = c.req.valid('json');
      await recordHeartbeat(deps, hostId, body).catch((err: unknown) => {
        if (err instanceof Error && /not registered/.test(err.message))
          throw unauthorized('the host was deleted or never registered');
        throw err;
      });
      deps.metrics?.heartbeatReceived(hostId);
      return c.json({ heartbeat_interval_sec: heartbeatSec }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/hosts',
      tags: ['hosts'],
      summary: "The hosts of the caller's BYOC teams",
      security: bearer,
      request: { query: z.object({ team_id: z.uuid().optional() }) },
      responses: {
        200: json(z.object({ hosts: z.array(Host) }), 'Hosts'),
        400: errors[400],
        401: errors[401],
      },
    }),
    async (c) => {
      const rows = await hostsVisibleTo(db, {
        userId: authed(c, 'userId'),
        teamId: c.req.valid('query').team_id,
      });
      return c.json({ hosts: rows.map(hostView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/hosts',
      tags: ['admin'],
      summary:
        'Every host, platform and BYOC, with its team, status, capacity, load and sandbox counts (admins only)',
      description: `Registered hosts as their last heartbeat left them; the static host (WRENN_AGENT_URL) is asked, with a ${STATIC_PROBE_TIMEOUT_MS} ms timeout.`,
      security: bearer,
      request: {
        query: z.object({
          deleted: z.enum(['true', 'false']).default('false').openapi({ description: 'Also deleted hosts' }),
        }),
      },
      responses: {
        200: json(z.object({ hosts: z.array(AdminHost) }), 'Hosts'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
      },
    }),
    async (c) => {
      const rows = await hostsVisibleTo(db, { all: true, deleted: c.req.valid('query').deleted === 'true' });
      const hosts = await Promise.all(
        rows.map(async (r) => ({ ...(r.is_static ? await probed(r) : hostView(r)), team_name: r.team_name })),
      );
      return c.json({ hosts }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/hosts/{id}',
      tags: ['hosts'],
      summary: 'Delete a host (admins: any; owners: their BYOC team’s)',
      description:
        'With sandboxes on it: 409 listing them (`sandboxes`), unless `?force=true`, which destroys them (best effort). The host’s tokens stop working and its connections are dropped.',
      security: bearer,
      request: {
        params: HostIdParam,
        query: z.object({ force: z.enum(['true', 'false']).default('false') }),
      },
      responses: {
        204: { description: 'Deleted' },
        409: json(
          z
            .object({ code: z.string(), message: z.string(), sandboxes: z.array(z.string()) })
            .openapi('HostInUse'),
          'The host still has sandboxes',
        ),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const force = c.req.valid('query').force === 'true';
      const team = await db.selectFrom('hosts').select('team_id').where('id', '=', id).executeTakeFirst();
      const outcome = await audited(
        c,
        deps,
        { action: 'host.delete', target: id, teamId: team?.team_id ?? null, details: { force } },
        () => deleteHost(deps, authed(c, 'userId'), id, force),
      );
      if (outcome.inUse)
        return c.json(
          {
            code: 'failed_precondition',
            message: `host ${id} has ${outcome.inUse.length} sandbox(es); delete with ?force=true to destroy them`,
            sandboxes: outcome.inUse,
          },
          409,
        );
      return c.body(null, 204);
    },
  );

  /**
   * The static host sends no heartbeats: whether it answers (within 2 s) and what it holds are
   * asked of its agent when it is listed.
   */
  async function probed(r: HostRow): Promise<z.infer<typeof HostFields>> {
    const view = hostView(r);
    try {
      const agent = await fleet.directory.agent(r.id);
      const { sandboxes } = await agent.listSandboxes({}, { timeoutMs: STATIC_PROBE_TIMEOUT_MS });
      const count = (status: hostagent.SandboxStatus) => sandboxes.filter((x) => x.status === status).length;
      return {
        ...view,
        status: 'online',
        running_count: count(hostagent.SandboxStatus.RUNNING),
        paused_count: count(hostagent.SandboxStatus.PAUSED),
      };
    } catch (err) {
      deps.logger.debug({ hostId: r.id, err }, 'the static host did not answer');
      return { ...view, status: 'unreachable' };
    }
  }

  /** The host a request's `Authorization: Bearer <host JWT>` names (401 when none, forged or expired). */
  async function hostFromJwt(c: Context<Env>): Promise<string> {
    const match = /^Bearer (\S+)$/.exec(c.req.header('authorization') ?? '');
    if (!match) throw unauthorized('Authorization: Bearer <host JWT> is required');
    const hostId = await credentials.verifyJwt(match[1]!);
    if (!hostId) throw unauthorized('the host token is invalid or expired; refresh it');
    return hostId;
  }
}
