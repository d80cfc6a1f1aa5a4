import type { Context, MiddlewareHandler } from 'hono';
import { UUID_PATTERN } from '@wrenn/core';
import { hashApiKey } from '../auth/tokens.js';
import type { ServerDeps, Env } from './app-types.js';
import { badRequest, forbidden, unauthorized } from './errors.js';

/** `Authorization: Bearer <JWT>` → the user (user and team management). */
export function requireUser(deps: ServerDeps): MiddlewareHandler<Env> {
  return async (c, next) => {
    const header = c.req.header('authorization') ?? bearerProtocol(c) ?? '';
    const match = /^Bearer (\S+)$/.exec(header);
    if (!match)
      throw unauthorized('Authorization: Bearer <token> is required (POST /v1/auth/login gives one)');
    const userId = await deps.tokens.verify(match[1]!);
    if (!userId) throw unauthorized('the bearer token is invalid or expired');
    const user = await deps.db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
    if (!user) throw unauthorized('the bearer token names a user that no longer exists');
    c.set('userId', userId);
    await next();
  };
}

/**
 * After `requireUser`: the user must be an admin. Read from the database on every request (not put in
 * the token), so taking the flag away takes effect at once.
 */
export function requireAdmin(deps: ServerDeps): MiddlewareHandler<Env> {
  return async (c, next) => {
    const user = await deps.db
      .selectFrom('users')
      .select('is_admin')
      .where('id', '=', authed(c, 'userId'))
      .executeTakeFirst();
    if (!user?.is_admin) throw forbidden('only administrators may use /v1/admin');
    await next();
  };
}

/**
 * The team a /v1 sandbox operation acts for: an API key's (`requireApiKey`), or, for a session
 * (`Authorization: Bearer`, the dashboard), the team `X-Wrenn-Team` names, of which the user must be a
 * member. E2B's API takes API keys only.
 */
export function requireTeamCaller(deps: ServerDeps): MiddlewareHandler<Env> {
  const session = requireUser(deps);
  const apiKey = requireApiKey(deps, 'X-API-Key is required (or a session with X-Wrenn-Team)');
  return async (c, next) =>
    !c.req.header('x-api-key') && (c.req.header('authorization') || bearerProtocol(c))
      ? session(c, () => actAsMember(deps, c, next))
      : apiKey(c, next);
}

/** `X-API-Key: wrn_…` → the team that owns the key (sandbox operations). */
export function requireApiKey(deps: ServerDeps, missing = 'X-API-Key is required'): MiddlewareHandler<Env> {
  return async (c, next) => {
    const key = c.req.header('x-api-key');
    if (!key) throw unauthorized(missing);
    // Looked up by hash: the index does the comparison, and a key is never held in the clear.
    const row = await deps.db
      .selectFrom('api_keys')
      .select(['id', 'team_id', 'last_used_at'])
      .where('key_hash', '=', hashApiKey(key))
      .executeTakeFirst();
    if (!row) throw unauthorized('the API key is invalid or was revoked');
    c.set('teamId', row.team_id);
    c.set('apiKeyId', row.id);
    // Recorded to the minute: a write per request was most of the API's overhead over the agent.
    const now = new Date();
    if (!row.last_used_at || now.getTime() - new Date(row.last_used_at).getTime() > 60_000) {
      await deps.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.id).execute();
    }
    await next();
  };
}

/**
 * A browser's WebSocket cannot send headers: the dashboard names its session in the subprotocols it
 * offers instead (`wrenn`, `bearer.<token>`, `team.<id>`; the server picks the first, `wrenn`). Not in
 * the URL, where it would land in access logs.
 */
function webSocketProtocols(c: Context<Env>): Map<string, string> {
  const offered =
    c.req.header('upgrade')?.toLowerCase() === 'websocket'
      ? c.req.header('sec-websocket-protocol')
      : undefined;
  const named = new Map<string, string>();
  for (const entry of offered?.split(',') ?? []) {
    const [, name, value] = /^\s*(bearer|team)\.(\S+?)\s*$/.exec(entry) ?? [];
    if (name && value) named.set(name, value);
  }
  return named;
}

const bearerProtocol = (c: Context<Env>) => {
  const token = webSocketProtocols(c).get('bearer');
  return token ? `Bearer ${token}` : undefined;
};

async function actAsMember(deps: ServerDeps, c: Context<Env>, next: () => Promise<void>): Promise<void> {
  const teamId = (c.req.header('x-wrenn-team') ?? webSocketProtocols(c).get('team') ?? '').toLowerCase();
  if (!UUID_PATTERN.test(teamId))
    throw badRequest('X-Wrenn-Team', 'a session acts for a team named by its id (a uuid) in this header');
  const member = await deps.db
    .selectFrom('team_members')
    .select('role')
    .where('team_id', '=', teamId)
    .where('user_id', '=', authed(c, 'userId'))
    .executeTakeFirst();
  // Not told apart from a team that does not exist.
  if (!member) throw forbidden('X-Wrenn-Team: you are not a member of this team');
  c.set('teamId', teamId);
  await next();
}

export function authed(c: Context<Env>, what: 'userId' | 'teamId'): string {
  const value = c.get(what);
  if (!value) throw unauthorized('not authenticated');
  return value;
}
