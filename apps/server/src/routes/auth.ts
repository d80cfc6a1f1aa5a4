import { createRoute, z } from '@hono/zod-openapi';
import { DEFAULT_LOGIN_LIMIT, LoginThrottle } from '../auth/login-throttle.js';
import { hashPassword, verifyPassword } from '../auth/passwords.js';
import type { App, ServerDeps } from '../http/app-types.js';
import { conflict, rateLimited, unauthorized } from '../http/errors.js';
import { errors, json, jsonBody } from '../http/schemas.js';

const Credentials = z
  .strictObject({
    email: z.email().max(254).openapi({ example: 'ada@example.com' }),
    password: z.string().min(8).max(256).openapi({ example: 'correct horse battery staple' }),
  })
  .openapi('Credentials');

const Session = z
  .object({
    token: z.string().openapi({ description: 'JWT for `Authorization: Bearer`; valid 24 h' }),
    user: z.object({ id: z.uuid(), email: z.string() }),
    team: z.object({ id: z.uuid(), name: z.string() }).optional(),
  })
  .openapi('Session');

export function authRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db, tokens } = deps;
  const throttle = new LoginThrottle(deps.loginLimit);

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/auth/signup',
      tags: ['auth'],
      summary: 'Create a user (and their default team)',
      request: { body: jsonBody(Credentials) },
      responses: {
        201: json(Session, 'The new user, their team and a session token'),
        400: errors[400],
        409: errors[409],
      },
    }),
    async (c) => {
      const { email, password } = c.req.valid('json');
      const normalized = email.toLowerCase();
      const passwordHash = await hashPassword(password);
      const created = await db.transaction().execute(async (tx) => {
        const existing = await tx
          .selectFrom('users')
          .select('id')
          .where('email', '=', normalized)
          .executeTakeFirst();
        if (existing) throw conflict(`email: an account for ${normalized} exists`);
        const user = await tx
          .insertInto('users')
          .values({ email: normalized, password_hash: passwordHash })
          .returning(['id', 'email'])
          .executeTakeFirstOrThrow();
        const team = await tx
          .insertInto('teams')
          .values({ name: `${normalized}'s team` })
          .returning(['id', 'name'])
          .executeTakeFirstOrThrow();
        await tx
          .insertInto('team_members')
          .values({ team_id: team.id, user_id: user.id, role: 'owner' })
          .execute();
        return { user, team };
      });
      return c.json({ token: await tokens.issue(created.user.id), ...created }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/auth/login',
      tags: ['auth'],
      summary: 'Exchange email and password for a session token',
      description:
        `Too many failed logins for one email (${DEFAULT_LOGIN_LIMIT.maxFailures} in ` +
        `${DEFAULT_LOGIN_LIMIT.windowMs / 60_000} minutes by default) lock it out: every login for it, even ` +
        'with the right password, is answered 429 with `Retry-After` until the window has passed.',
      request: { body: jsonBody(Credentials) },
      responses: {
        200: json(Session, 'A session token'),
        400: errors[400],
        401: errors[401],
        429: {
          ...errors[429],
          description: 'Too many failed logins for this email; try again after `Retry-After` seconds',
          headers: {
            'Retry-After': {
              description: 'Seconds until this email may try again',
              schema: { type: 'integer', minimum: 1 },
            },
          },
        },
      },
    }),
    async (c) => {
      const { email, password } = c.req.valid('json');
      const normalized = email.toLowerCase();
      // Unknown emails are counted too, so a lockout does not tell which emails exist.
      const locked = throttle.begin(normalized);
      if (locked) {
        c.header('Retry-After', String(locked.retryAfterSec));
        throw rateLimited(`too many failed logins for this email; try again in ${locked.retryAfterSec} s`);
      }
      const user = await db
        .selectFrom('users')
        .select(['id', 'email', 'password_hash'])
        .where('email', '=', normalized)
        .executeTakeFirst();
      // Verified even when there is no such user, so timing does not tell which emails exist.
      if (!(await verifyPassword(user?.password_hash, password)) || !user) {
        throw unauthorized('wrong email or password');
      }
      throttle.succeeded(normalized);
      return c.json({ token: await tokens.issue(user.id), user: { id: user.id, email: user.email } }, 200);
    },
  );
}
