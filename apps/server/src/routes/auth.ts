import type { IncomingMessage } from 'node:http';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { sql } from 'kysely';
import { hashPassword, verifyPassword } from '../auth/passwords.js';
import { AuthRateLimits, DEFAULT_AUTH_LIMITS } from '../auth/rate-limits.js';
import { hashApiKey } from '../auth/tokens.js';
import type { App, Env, ServerDeps } from '../http/app-types.js';
import { requestOrigin } from '../http/client-address.js';
import { conflict, forbidden, unauthorized } from '../http/errors.js';
import { errors, json, jsonBody } from '../http/schemas.js';
import { audit } from '../services/audit.js';

const Credentials = z
  .strictObject({
    email: z.email().max(254).openapi({ example: 'ada@example.com' }),
    password: z.string().min(8).max(256).openapi({ example: 'correct horse battery staple' }),
  })
  .openapi('Credentials');

const Signup = Credentials.extend({
  invite: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .openapi({ description: 'An invite token (`POST /v1/admin/invites`); required unless signup is open' }),
}).openapi('Signup');

const Session = z
  .object({
    token: z.string().openapi({ description: 'JWT for `Authorization: Bearer`; valid 24 h' }),
    user: z.object({ id: z.uuid(), email: z.string() }),
    team: z.object({ id: z.uuid(), name: z.string() }).optional(),
  })
  .openapi('Session');

const limited = (what: string) => ({
  ...errors[429],
  description: `Too many ${what}; try again after \`Retry-After\` seconds`,
  headers: {
    'Retry-After': {
      description: 'Seconds until the limit allows another attempt',
      schema: { type: 'integer' as const, minimum: 1 },
    },
  },
});

/** The client's address as admitted (behind trusted proxies only, the forwarded one). */
export function clientIp(c: Context<Env>): string | undefined {
  return requestOrigin((c.env as { incoming?: IncomingMessage } | undefined)?.incoming)?.ip;
}

export function authRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db, tokens } = deps;
  const limits = new AuthRateLimits(db, deps.authLimits ?? DEFAULT_AUTH_LIMITS);
  const l = deps.authLimits ?? DEFAULT_AUTH_LIMITS;

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/auth/signup',
      tags: ['auth'],
      summary: 'Create a user (and their default team): with an invite, or when signup is open',
      description:
        'Signup is closed unless the server runs with `WRENN_OPEN_SIGNUP=true`: otherwise it takes an ' +
        '`invite` an administrator made (`POST /v1/admin/invites`), used once, before it expires, and ' +
        'only by its email when it names one. Limited per client address ' +
        `(${l.signupPerIp.points} per ${l.signupPerIp.durationSec} s by default) and per email ` +
        `(${l.signupPerEmail.points}); invites per address (${l.invitePerIp.points}) and per invite ` +
        `(${l.invitePerToken.points}). Over a limit: 429 with \`Retry-After\`.`,
      request: { body: jsonBody(Signup) },
      responses: {
        201: json(Session, 'The new user, their team and a session token'),
        400: errors[400],
        403: errors[403],
        409: errors[409],
        429: limited('signups from this address or for this email'),
      },
    }),
    async (c) => {
      const { email, password, invite } = c.req.valid('json');
      const normalized = email.toLowerCase();
      const ip = clientIp(c);
      await limits.take('signupPerIp', ip, 'signups from this address');
      await limits.take('signupPerEmail', normalized, 'signups for this email');
      const inviteHash = invite === undefined ? undefined : hashApiKey(invite);
      if (inviteHash) {
        await limits.take('invitePerIp', ip, 'invites tried from this address');
        await limits.take('invitePerToken', inviteHash, 'attempts with this invite');
      } else if (!deps.openSignup) {
        throw forbidden(
          'signup is by invitation: an administrator makes an invite (POST /v1/admin/invites), ' +
            'or the server runs with WRENN_OPEN_SIGNUP=true',
        );
      }
      const passwordHash = await hashPassword(password);
      const created = await db.transaction().execute(async (tx) => {
        let inviteId: string | undefined;
        if (inviteHash) {
          // Taken in the transaction: a signup that fails (a taken email) leaves the invite unused,
          // and two signups with one invite cannot both have it.
          const row = await tx
            .selectFrom('invites')
            .select(['id', 'email', 'expires_at', 'used_at'])
            .where('token_hash', '=', inviteHash)
            .forUpdate()
            .executeTakeFirst();
          if (!row) throw forbidden('invite: no such invite');
          if (row.used_at) throw forbidden('invite: already used');
          if (new Date(row.expires_at).getTime() <= Date.now()) throw forbidden('invite: expired');
          if (row.email && row.email !== normalized)
            throw forbidden('invite: made for another email address');
          inviteId = row.id;
        }
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
        if (inviteId)
          await tx
            .updateTable('invites')
            .set({ used_at: sql<Date>`now()`, used_by: user.id })
            .where('id', '=', inviteId)
            .execute();
        return { user, team, inviteId };
      });
      const { user, team, inviteId } = created;
      await audit(c, deps, { action: 'user.signup', target: user.id, teamId: team.id, actorUserId: user.id });
      if (inviteId)
        await audit(c, deps, {
          action: 'invite.redeem',
          target: inviteId,
          teamId: null,
          actorUserId: user.id,
        });
      return c.json({ token: await tokens.issue(user.id), user, team }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/auth/login',
      tags: ['auth'],
      summary: 'Exchange email and password for a session token',
      description:
        `Too many failed logins for one email (${l.loginFailuresPerEmail.points} in ` +
        `${l.loginFailuresPerEmail.durationSec / 60} minutes by default) lock it out: every login for it, even ` +
        'with the right password, is answered 429 with `Retry-After` until the window has passed. ' +
        `One client address may try ${l.loginPerIp.points} logins per ${l.loginPerIp.durationSec / 60} ` +
        'minutes. The counts are kept in the database, so every server replica shares them.',
      request: { body: jsonBody(Credentials) },
      responses: {
        200: json(Session, 'A session token'),
        400: errors[400],
        401: errors[401],
        429: limited('failed logins for this email, or logins from this address'),
      },
    }),
    async (c) => {
      const { email, password } = c.req.valid('json');
      const normalized = email.toLowerCase();
      await limits.take('loginPerIp', clientIp(c), 'logins from this address');
      // Counted as a failure from the start (and taken back when the password is right), so parallel
      // guesses cannot all slip in while their hashes are verified; unknown emails are counted too,
      // so a lockout does not tell which emails exist.
      await limits.take('loginFailuresPerEmail', normalized, 'failed logins for this email');
      const user = await db
        .selectFrom('users')
        .select(['id', 'email', 'password_hash'])
        .where('email', '=', normalized)
        .executeTakeFirst();
      // Verified even when there is no such user, so timing does not tell which emails exist.
      if (!(await verifyPassword(user?.password_hash, password)) || !user) {
        throw unauthorized('wrong email or password');
      }
      await limits.clear('loginFailuresPerEmail', normalized);
      return c.json({ token: await tokens.issue(user.id), user: { id: user.id, email: user.email } }, 200);
    },
  );
}
