import { createRoute, z } from '@hono/zod-openapi';
import type { App, ServerDeps } from '../http/app-types.js';
import { requireAdmin, requireUser } from '../http/auth.js';
import {
  AdminSandbox,
  bearer,
  errors,
  json,
  SANDBOX_STATUS,
  sandboxView,
  snapshotView,
} from '../http/schemas.js';

/** How long GET /v1/admin/hosts waits for the agent before calling it unreachable. */
const HOST_PROBE_TIMEOUT_MS = 2000;

const AdminTeam = z
  .object({
    id: z.uuid(),
    name: z.string(),
    created_at: z.string(),
    member_count: z.number().int(),
    sandbox_count: z.number().int().openapi({ description: 'Sandboxes not stopped' }),
  })
  .openapi('AdminTeam');

const AdminTemplate = z
  .object({
    id: z.uuid(),
    team_id: z.uuid().nullable().openapi({ description: 'null: a platform template, visible to every team' }),
    name: z.string(),
    kind: z.enum(['snapshot', 'image']),
    source_sandbox_id: z.string().nullable(),
    vcpus: z.number().int(),
    memory_mb: z.number().int(),
    disk_mb: z.number().int(),
    size_bytes: z.number().int(),
    created_at: z.string(),
  })
  .openapi('AdminTemplate');

const AdminHost = z
  .object({
    id: z.string().openapi({ example: 'local' }),
    reachable: z
      .boolean()
      .openapi({ description: `Whether the agent answered within ${HOST_PROBE_TIMEOUT_MS} ms` }),
    sandboxes: z
      .number()
      .int()
      .nullable()
      .openapi({ description: 'Sandboxes the agent holds; null when it did not answer' }),
  })
  .openapi('AdminHost');

const iso = (d: Date) => new Date(d).toISOString();

/** Read-only views across every team, for users with `is_admin` (checked on every request). */
export function adminRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db, agent } = deps;
  app.use('/v1/admin/*', requireUser(deps), requireAdmin(deps));

  const adminErrors = { 401: errors[401], 403: errors[403] };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/teams',
      tags: ['admin'],
      summary: 'Every team, with its member and sandbox counts (admins only)',
      security: bearer,
      responses: { 200: json(z.object({ teams: z.array(AdminTeam) }), 'Teams'), ...adminErrors },
    }),
    async (c) => {
      const rows = await db
        .selectFrom('teams')
        .select((eb) => [
          'teams.id',
          'teams.name',
          'teams.created_at',
          eb
            .selectFrom('team_members')
            .select(eb.fn.countAll<string>().as('n'))
            .whereRef('team_members.team_id', '=', 'teams.id')
            .as('member_count'),
          eb
            .selectFrom('sandboxes')
            .select(eb.fn.countAll<string>().as('n'))
            .whereRef('sandboxes.team_id', '=', 'teams.id')
            .where('sandboxes.status', '!=', 'stopped')
            .as('sandbox_count'),
        ])
        .orderBy('teams.created_at')
        .orderBy('teams.id')
        .execute();
      const teams = rows.map((r) => ({
        id: r.id,
        name: r.name,
        created_at: iso(r.created_at),
        member_count: Number(r.member_count ?? 0),
        sandbox_count: Number(r.sandbox_count ?? 0),
      }));
      return c.json({ teams }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/sandboxes',
      tags: ['admin'],
      summary: "Every team's sandboxes (admins only)",
      security: bearer,
      request: {
        query: z.object({
          status: z
            .enum(SANDBOX_STATUS)
            .optional()
            .openapi({ description: 'Only this status; without it, all but stopped sandboxes' }),
          team_id: z.uuid().optional(),
        }),
      },
      responses: {
        200: json(z.object({ sandboxes: z.array(AdminSandbox) }), 'Sandboxes'),
        400: errors[400],
        ...adminErrors,
      },
    }),
    async (c) => {
      const { status, team_id } = c.req.valid('query');
      let query = db.selectFrom('sandboxes').selectAll();
      query = status ? query.where('status', '=', status) : query.where('status', '!=', 'stopped');
      if (team_id) query = query.where('team_id', '=', team_id);
      const rows = await query.orderBy('created_at').orderBy('id').execute();
      const sandboxes = rows.map((row) => ({ ...sandboxView(row), team_id: row.team_id }));
      return c.json({ sandboxes }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/templates',
      tags: ['admin'],
      summary: "Every template: the platform's and every team's snapshots (admins only)",
      security: bearer,
      responses: { 200: json(z.object({ templates: z.array(AdminTemplate) }), 'Templates'), ...adminErrors },
    }),
    async (c) => {
      const rows = await db.selectFrom('templates').selectAll().orderBy('created_at').orderBy('id').execute();
      const templates = rows.map((row) => ({ ...snapshotView(row), team_id: row.team_id, kind: row.kind }));
      return c.json({ templates }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/hosts',
      tags: ['admin'],
      summary: 'The host agents and whether they answer (admins only)',
      description: `One host for now: the agent this server is configured with, asked for its sandboxes with a ${HOST_PROBE_TIMEOUT_MS} ms timeout.`,
      security: bearer,
      responses: { 200: json(z.object({ hosts: z.array(AdminHost) }), 'Hosts'), ...adminErrors },
    }),
    async (c) => {
      const host = await agent.listSandboxes({}, { timeoutMs: HOST_PROBE_TIMEOUT_MS }).then(
        (res) => ({ id: 'local', reachable: true, sandboxes: res.sandboxes.length }),
        (err: unknown) => {
          deps.logger.debug({ err }, 'host agent did not answer');
          return { id: 'local', reachable: false, sandboxes: null };
        },
      );
      return c.json({ hosts: [host] }, 200);
    },
  );
}
