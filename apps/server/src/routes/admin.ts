import { randomBytes } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { hashApiKey } from '../auth/tokens.js';
import type { App, ServerDeps } from '../http/app-types.js';
import { AuditPage, AuditQuery, auditPage } from '../http/audit-views.js';
import { authed, requireAdmin, requireUser } from '../http/auth.js';
import { notFound } from '../http/errors.js';
import { audit } from '../services/audit.js';
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

const AdminUser = z
  .object({
    id: z.uuid(),
    email: z.string(),
    is_admin: z.boolean(),
    created_at: z.string(),
    team_count: z.number().int().openapi({ description: 'Teams the user is a member of' }),
  })
  .openapi('AdminUser');
const UsersQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  after: z
    .string()
    .max(254)
    .optional()
    .openapi({ description: 'Only users whose email sorts after this (`next_after` of the previous page)' }),
});

const Invite = z
  .object({
    id: z.uuid(),
    email: z.string().nullable().openapi({ description: 'Only this email may use it; null: anyone' }),
    created_at: z.string(),
    expires_at: z.string(),
    used_at: z.string().nullable(),
    used_by: z.uuid().nullable(),
  })
  .openapi('Invite');
const NewInvite = Invite.extend({
  token: z.string().openapi({ description: 'The invite itself (`invite` in signup): shown this once' }),
}).openapi('NewInvite');

/** How long an invite is good for by default, and at most. */
const INVITE_DEFAULT_SEC = 7 * 86_400;
const INVITE_MAX_SEC = 30 * 86_400;

const iso = (d: Date) => new Date(d).toISOString();
const inviteView = (r: {
  id: string;
  email: string | null;
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
  used_by: string | null;
}) => ({
  id: r.id,
  email: r.email,
  created_at: iso(r.created_at),
  expires_at: iso(r.expires_at),
  used_at: r.used_at ? iso(r.used_at) : null,
  used_by: r.used_by,
});

/** Views across every team, invites and the audit log, for users with `is_admin` (checked on every request). */
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
      path: '/v1/admin/users',
      tags: ['admin'],
      summary: 'Every user, by email, a page at a time (admins only)',
      description: "Paged by `after` (the previous page's `next_after`, null on the last page).",
      security: bearer,
      request: { query: UsersQuery },
      responses: {
        200: json(
          z.object({ users: z.array(AdminUser), next_after: z.string().nullable() }),
          'A page of users',
        ),
        400: errors[400],
        ...adminErrors,
      },
    }),
    async (c) => {
      const { limit, after } = c.req.valid('query');
      let query = db
        .selectFrom('users')
        .select((eb) => [
          'users.id',
          'users.email',
          'users.is_admin',
          'users.created_at',
          eb
            .selectFrom('team_members')
            .select(eb.fn.countAll<string>().as('n'))
            .whereRef('team_members.user_id', '=', 'users.id')
            .as('team_count'),
        ]);
      // Emails are stored lower-cased and unique: a stable order to page by.
      if (after !== undefined) query = query.where('users.email', '>', after.toLowerCase());
      const rows = await query
        .orderBy('users.email')
        .limit(limit + 1)
        .execute();
      const page = rows.slice(0, limit);
      const users = page.map((r) => ({
        id: r.id,
        email: r.email,
        is_admin: r.is_admin,
        created_at: iso(r.created_at),
        team_count: Number(r.team_count ?? 0),
      }));
      return c.json({ users, next_after: rows.length > limit ? page.at(-1)!.email : null }, 200);
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
      await audit(c, deps, {
        action: 'admin.team_byoc',
        target: id,
        teamId: id,
        details: { is_byoc: team.is_byoc },
      });
      return c.json(team, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/invites',
      tags: ['admin'],
      summary: 'Invite someone to sign up: a one-time token with an expiry (admins only)',
      security: bearer,
      request: {
        body: jsonBody(
          z.strictObject({
            email: z.email().max(254).optional().openapi({ description: 'Only this email may use it' }),
            expires_in_sec: z
              .number()
              .int()
              .min(60)
              .max(INVITE_MAX_SEC)
              .optional()
              .openapi({ description: `Default ${INVITE_DEFAULT_SEC} (7 days)` }),
          }),
        ),
      },
      responses: {
        201: json(NewInvite, 'The invite, its token shown this once'),
        400: errors[400],
        ...adminErrors,
      },
    }),
    async (c) => {
      const { email, expires_in_sec } = c.req.valid('json');
      const token = `wri_${randomBytes(24).toString('base64url')}`;
      const row = await db
        .insertInto('invites')
        .values({
          token_hash: hashApiKey(token),
          email: email?.toLowerCase() ?? null,
          created_by: authed(c, 'userId'),
          expires_at: new Date(Date.now() + (expires_in_sec ?? INVITE_DEFAULT_SEC) * 1000),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await audit(c, deps, {
        action: 'invite.create',
        target: row.id,
        teamId: null,
        details: { email: row.email },
      });
      return c.json({ ...inviteView(row), token }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/invites',
      tags: ['admin'],
      summary: 'Every invite, used or not (never the tokens) (admins only)',
      security: bearer,
      responses: { 200: json(z.object({ invites: z.array(Invite) }), 'Invites'), ...adminErrors },
    }),
    async (c) => {
      const rows = await db.selectFrom('invites').selectAll().orderBy('created_at').orderBy('id').execute();
      return c.json({ invites: rows.map(inviteView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/audit',
      tags: ['admin', 'audit'],
      summary: "Every team's audit log and the platform's own actions, newest first (admins only)",
      security: bearer,
      request: { query: AuditQuery.extend({ team_id: z.uuid().optional() }) },
      responses: { 200: json(AuditPage, 'A page of entries'), 400: errors[400], ...adminErrors },
    }),
    async (c) => {
      const { team_id, ...rest } = c.req.valid('query');
      return c.json(await auditPage(db, { teamId: team_id, ...rest }), 200);
    },
  );
}
