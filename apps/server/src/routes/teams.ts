import { createRoute, z } from '@hono/zod-openapi';
import { newApiKey } from '../auth/tokens.js';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed, requireUser } from '../http/auth.js';
import { AuditPage, AuditQuery, auditPage } from '../http/audit-views.js';
import { conflict, forbidden, notFound } from '../http/errors.js';
import { bearer, errors, json, jsonBody, Team } from '../http/schemas.js';
import { audit } from '../services/audit.js';
import { deleteTeam } from '../services/team-deletion.js';
import { teamsOfUser } from '../services/user-teams.js';

const Member = z
  .object({ user_id: z.uuid(), email: z.string(), role: z.enum(['owner', 'member']) })
  .openapi('TeamMember');
const ApiKey = z
  .object({
    id: z.uuid(),
    name: z.string(),
    prefix: z.string().openapi({ description: 'The first characters of the key, to tell keys apart' }),
    created_at: z.string(),
    last_used_at: z.string().nullable(),
  })
  .openapi('ApiKey');
const NewApiKey = ApiKey.extend({
  key: z.string().openapi({ description: 'The key itself: shown this once, stored only as a hash' }),
}).openapi('NewApiKey');
const TeamParam = z.object({ teamId: z.uuid().openapi({ param: { name: 'teamId', in: 'path' } }) });
const MemberParam = TeamParam.extend({
  userId: z.uuid().openapi({ param: { name: 'userId', in: 'path' } }),
});
const ROLE = z.enum(['owner', 'member']);

export function teamRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db } = deps;
  app.use('/v1/teams', requireUser(deps));
  app.use('/v1/teams/*', requireUser(deps));

  /** The caller's role in the team; a team they are not in does not exist for them (404). */
  async function roleIn(userId: string, teamId: string): Promise<'owner' | 'member'> {
    const row = await db
      .selectFrom('team_members')
      .select('role')
      .where('team_id', '=', teamId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    if (!row) throw notFound('team', teamId);
    return row.role;
  }

  /**
   * Owners of the team, and platform admins (for any team that exists), may `what`; a member is
   * refused with 403 naming the role needed, and the refusal is in the audit log.
   */
  async function requireOwner(
    c: Parameters<typeof authed>[0],
    teamId: string,
    what: string,
    denied?: { action: Parameters<typeof audit>[2]['action']; target?: string },
  ): Promise<void> {
    const userId = authed(c, 'userId');
    const user = await db.selectFrom('users').select('is_admin').where('id', '=', userId).executeTakeFirst();
    if (user?.is_admin) {
      const team = await db.selectFrom('teams').select('id').where('id', '=', teamId).executeTakeFirst();
      if (!team) throw notFound('team', teamId);
      return;
    }
    const role = await roleIn(userId, teamId);
    if (role === 'owner') return;
    if (denied) await audit(c, deps, { ...denied, teamId, result: 'denied' });
    throw forbidden(`only team owners (or platform admins) ${what}; your role in this team is ${role}`);
  }

  /** Refuses a change that would leave the team without an owner. */
  async function keepAnOwner(teamId: string, losing: string): Promise<void> {
    const owners = await db
      .selectFrom('team_members')
      .select('user_id')
      .where('team_id', '=', teamId)
      .where('role', '=', 'owner')
      .execute();
    if (owners.length === 1 && owners[0]!.user_id === losing)
      throw conflict('a team keeps at least one owner: make another member owner first');
  }

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/teams',
      tags: ['teams'],
      summary: "The caller's teams",
      security: bearer,
      responses: { 200: json(z.object({ teams: z.array(Team) }), 'Teams'), 401: errors[401] },
    }),
    async (c) => {
      return c.json({ teams: await teamsOfUser(db, authed(c, 'userId')) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/teams/{teamId}/members',
      tags: ['teams'],
      summary: 'Members of a team',
      security: bearer,
      request: { params: TeamParam },
      responses: {
        200: json(z.object({ members: z.array(Member) }), 'Members'),
        401: errors[401],
        404: errors[404],
      },
    }),
    async (c) => {
      const { teamId } = c.req.valid('param');
      await roleIn(authed(c, 'userId'), teamId);
      const members = await db
        .selectFrom('team_members')
        .innerJoin('users', 'users.id', 'team_members.user_id')
        .select(['users.id as user_id', 'users.email', 'team_members.role'])
        .where('team_members.team_id', '=', teamId)
        .orderBy('team_members.created_at')
        .execute();
      return c.json({ members }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/teams/{teamId}',
      tags: ['teams'],
      summary: 'Delete a team and everything of it on every host (owners and admins)',
      description:
        'Its sandboxes are destroyed, its templates removed from every host that holds them (a host that is down gets the delete when it reports in), its own hosts deleted, then its members and keys.',
      security: bearer,
      request: { params: TeamParam },
      responses: { 204: { description: 'Deleted' }, 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => {
      const { teamId } = c.req.valid('param');
      const userId = authed(c, 'userId');
      await requireOwner(c, teamId, 'delete the team', { action: 'team.delete', target: teamId });
      await deleteTeam(deps, userId, teamId);
      await audit(c, deps, { action: 'team.delete', target: teamId, teamId });
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/teams/{teamId}/members',
      tags: ['teams'],
      summary: 'Add an existing user to a team (owners only)',
      security: bearer,
      request: { params: TeamParam, body: jsonBody(z.strictObject({ email: z.email() })) },
      responses: {
        201: json(Member, 'The new member'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
      },
    }),
    async (c) => {
      const { teamId } = c.req.valid('param');
      await requireOwner(c, teamId, 'add members', { action: 'member.add' });
      const email = c.req.valid('json').email.toLowerCase();
      const user = await db
        .selectFrom('users')
        .select(['id', 'email'])
        .where('email', '=', email)
        .executeTakeFirst();
      if (!user) throw notFound('user', email);
      const added = await db
        .insertInto('team_members')
        .values({ team_id: teamId, user_id: user.id, role: 'member' })
        .onConflict((oc) => oc.doNothing())
        .returning('user_id')
        .executeTakeFirst();
      if (added) await audit(c, deps, { action: 'member.add', target: user.id, teamId, details: { email } });
      return c.json({ user_id: user.id, email: user.email, role: 'member' as const }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/v1/teams/{teamId}/members/{userId}',
      tags: ['teams'],
      summary: "Change a member's role (owners and admins)",
      security: bearer,
      request: { params: MemberParam, body: jsonBody(z.strictObject({ role: ROLE })) },
      responses: {
        200: json(Member, 'The member'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
        409: errors[409],
      },
    }),
    async (c) => {
      const { teamId, userId } = c.req.valid('param');
      await requireOwner(c, teamId, "change members' roles", {
        action: 'member.role_change',
        target: userId,
      });
      const { role } = c.req.valid('json');
      if (role !== 'owner') await keepAnOwner(teamId, userId);
      const row = await db
        .updateTable('team_members')
        .set({ role })
        .where('team_id', '=', teamId)
        .where('user_id', '=', userId)
        .returning('user_id')
        .executeTakeFirst();
      if (!row) throw notFound('member', userId);
      const user = await db
        .selectFrom('users')
        .select('email')
        .where('id', '=', userId)
        .executeTakeFirstOrThrow();
      await audit(c, deps, { action: 'member.role_change', target: userId, teamId, details: { role } });
      return c.json({ user_id: userId, email: user.email, role }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/teams/{teamId}/members/{userId}',
      tags: ['teams'],
      summary: 'Remove a member from a team (owners and admins)',
      security: bearer,
      request: { params: MemberParam },
      responses: {
        204: { description: 'Removed' },
        401: errors[401],
        403: errors[403],
        404: errors[404],
        409: errors[409],
      },
    }),
    async (c) => {
      const { teamId, userId } = c.req.valid('param');
      await requireOwner(c, teamId, 'remove members', { action: 'member.remove', target: userId });
      await keepAnOwner(teamId, userId);
      const deleted = await db
        .deleteFrom('team_members')
        .where('team_id', '=', teamId)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      if (!deleted.numDeletedRows) throw notFound('member', userId);
      await audit(c, deps, { action: 'member.remove', target: userId, teamId });
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/teams/{teamId}/audit',
      tags: ['audit'],
      summary: "The team's audit log, newest first (owners and admins)",
      description: "Paged by `before` (the previous page's `next_before`); `action` filters.",
      security: bearer,
      request: { params: TeamParam, query: AuditQuery },
      responses: {
        200: json(AuditPage, 'A page of entries'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
      },
    }),
    async (c) => {
      const { teamId } = c.req.valid('param');
      await requireOwner(c, teamId, 'read the audit log');
      return c.json(await auditPage(db, { teamId, ...c.req.valid('query') }), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/teams/{teamId}/api-keys',
      tags: ['api keys'],
      summary: 'Create an API key for the team, shown once (owners and admins)',
      security: bearer,
      request: { params: TeamParam, body: jsonBody(z.strictObject({ name: z.string().min(1).max(100) })) },
      responses: {
        201: json(NewApiKey, 'The key, shown this once'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
      },
    }),
    async (c) => {
      const { teamId } = c.req.valid('param');
      const userId = authed(c, 'userId');
      await requireOwner(c, teamId, 'create API keys', { action: 'api_key.create' });
      const { key, prefix, hash } = newApiKey();
      const row = await db
        .insertInto('api_keys')
        .values({
          team_id: teamId,
          name: c.req.valid('json').name,
          prefix,
          key_hash: hash,
          created_by: userId,
        })
        .returning(['id', 'name', 'prefix', 'created_at', 'last_used_at'])
        .executeTakeFirstOrThrow();
      await audit(c, deps, { action: 'api_key.create', target: row.id, teamId, details: { name: row.name } });
      return c.json({ ...keyView(row), key }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/teams/{teamId}/api-keys',
      tags: ['api keys'],
      summary: "The team's API keys (never the keys themselves)",
      security: bearer,
      request: { params: TeamParam },
      responses: {
        200: json(z.object({ api_keys: z.array(ApiKey) }), 'Keys'),
        401: errors[401],
        404: errors[404],
      },
    }),
    async (c) => {
      const { teamId } = c.req.valid('param');
      await roleIn(authed(c, 'userId'), teamId);
      const rows = await db
        .selectFrom('api_keys')
        .select(['id', 'name', 'prefix', 'created_at', 'last_used_at'])
        .where('team_id', '=', teamId)
        .orderBy('created_at')
        .execute();
      return c.json({ api_keys: rows.map(keyView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/teams/{teamId}/api-keys/{keyId}',
      tags: ['api keys'],
      summary: 'Revoke an API key (owners and admins)',
      security: bearer,
      request: {
        params: TeamParam.extend({ keyId: z.uuid().openapi({ param: { name: 'keyId', in: 'path' } }) }),
      },
      responses: { 204: { description: 'Revoked' }, 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => {
      const { teamId, keyId } = c.req.valid('param');
      await requireOwner(c, teamId, 'revoke API keys', { action: 'api_key.revoke', target: keyId });
      const deleted = await db
        .deleteFrom('api_keys')
        .where('id', '=', keyId)
        .where('team_id', '=', teamId)
        .executeTakeFirst();
      if (!deleted.numDeletedRows) throw notFound('api key', keyId);
      await audit(c, deps, { action: 'api_key.revoke', target: keyId, teamId });
      return c.body(null, 204);
    },
  );
}

function keyView(row: {
  id: string;
  name: string;
  prefix: string;
  created_at: Date;
  last_used_at: Date | null;
}) {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    created_at: new Date(row.created_at).toISOString(),
    last_used_at: row.last_used_at ? new Date(row.last_used_at).toISOString() : null,
  };
}
