import { createRoute, z } from '@hono/zod-openapi';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed, requireUser } from '../http/auth.js';
import { bearer, errors, json, Team } from '../http/schemas.js';
import { teamsOfUser } from '../services/user-teams.js';

const Me = z
  .object({
    id: z.uuid(),
    email: z.string(),
    is_admin: z.boolean().openapi({ description: 'A platform administrator (may use /v1/admin)' }),
    teams: z.array(Team),
  })
  .openapi('Me');

/**
 * Who the session is: what the dashboard needs to decide what to show (the Admin area, a BYOC
 * team's Hosts). What it shows is only a convenience; every route checks for itself.
 */
export function meRoutes(app: App, deps: ServerDeps): void {
  const { db } = deps;
  app.use('/v1/me', requireUser(deps));

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/me',
      tags: ['auth'],
      summary: 'The signed-in user: email, whether they are an administrator, their teams and roles',
      security: bearer,
      responses: { 200: json(Me, 'The user'), 401: errors[401] },
    }),
    async (c) => {
      const userId = authed(c, 'userId');
      const user = await db
        .selectFrom('users')
        .select(['id', 'email', 'is_admin'])
        .where('id', '=', userId)
        .executeTakeFirstOrThrow();
      return c.json({ ...user, teams: await teamsOfUser(db, userId) }, 200);
    },
  );
}
