import { createRoute, z } from '@hono/zod-openapi';
import type { App, ServerDeps } from '../http/app-types.js';
import { requireAdmin, requireUser } from '../http/auth.js';
import { notFound } from '../http/errors.js';
import {
  AdminSandbox,
  bearer,
  errors,
  json,
  jsonBody,
  SANDBOX_STATUS,
  sandboxView,
  snapshotView,
} from '../http/schemas.js';

const AdminTeam = z
  .object({
    id: z.uuid(),
    name: z.string(),
    is_byoc: z.boolean(),
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

const iso = (d: Date) => new Date(d).toISOString();

/** Read-only views across every team, for users with `is_admin` (checked on every request). */
export function adminRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db } = deps;
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
          'teams.is_byoc',
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
        is_byoc: r.is_byoc,
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
      method: 'put',
      path: '/v1/admin/teams/{id}/byoc',
      tags: ['admin'],
      summary: 'Make a team BYOC (its sandboxes run only on its own hosts) or not (admins only)',
      security: bearer,
      request: {
        params: z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) }),
        body: jsonBody(z.strictObject({ is_byoc: z.boolean() })),
      },
      responses: {
        200: json(z.object({ id: z.uuid(), name: z.string(), is_byoc: z.boolean() }), 'The team'),
        400: errors[400],
        404: errors[404],
        ...adminErrors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const team = await db
        .updateTable('teams')
        .set({ is_byoc: c.req.valid('json').is_byoc })
        .where('id', '=', id)
        .returning(['id', 'name', 'is_byoc'])
        .executeTakeFirst();
      if (!team) throw notFound('team', id);
      return c.json(team, 200);
    },
  );
}
