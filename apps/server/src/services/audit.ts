import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { sql } from 'kysely';
import type { Logger } from '@wrenn/core';
import type { Db } from '../db/database.js';
import type { Env } from '../http/app-types.js';
import { requestOrigin } from '../http/client-address.js';

/** Everything the audit log records, by name (`GET …/audit?action=` filters on these). */
export const AUDIT_ACTIONS = [
  'sandbox.create',
  'sandbox.kill',
  'sandbox.pause',
  'sandbox.resume',
  'sandbox.snapshot',
  'sandbox.network',
  'snapshot.delete',
  'api_key.create',
  'api_key.revoke',
  'member.add',
  'member.remove',
  'member.role_change',
  'team.delete',
  'host.create',
  'host.register',
  'host.delete',
  'host.drain',
  'host.undrain',
  'sandbox.move',
  'build.start',
  'build.cancel',
  'invite.create',
  'invite.redeem',
  'user.signup',
  'admin.team_byoc',
  'admin.warm_pool',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
export type AuditResult = 'ok' | 'denied' | 'failed';

export interface AuditEntry {
  action: AuditAction;
  /** What it was done to: a sandbox id, a key id, a user id, a host id… */
  target?: string;
  /** The team it concerns; default: the team of the request's API key. */
  teamId?: string | null;
  result?: AuditResult;
  details?: Record<string, unknown>;
  /** The acting user, when the request's own is not it (a signup: the user just made). */
  actorUserId?: string;
}

/**
 * Records who did what: the acting user (bearer token) or API key, the team, the action and its
 * target, the request's id and client address (behind trusted proxies only: http/client-address.ts),
 * the result. Called by the routes after the action; a failure to write is logged, never thrown
 * over the action that already happened.
 */
export async function audit(
  c: Context<Env>,
  deps: { db: Db; logger: Logger },
  entry: AuditEntry,
): Promise<void> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const origin = requestOrigin(incoming);
  const row = {
    actor_user_id: entry.actorUserId ?? c.get('userId') ?? null,
    actor_api_key_id: c.get('apiKeyId') ?? null,
    team_id: entry.teamId === undefined ? (c.get('teamId') ?? null) : entry.teamId,
    action: entry.action,
    target: entry.target ?? null,
    result: entry.result ?? 'ok',
    request_id: origin?.requestId ?? null,
    ip: origin?.ip ?? null,
    details: entry.details ? JSON.stringify(entry.details) : null,
  };
  try {
    await deps.db.insertInto('audit_log').values(row).execute();
  } catch (err) {
    deps.logger.error({ err, audit: row }, 'writing the audit log failed');
  }
}

/** Deletes entries older than `retentionDays` (the leader's periodic pass). */
export async function pruneAuditLog(db: Db, retentionDays: number): Promise<number> {
  const result = await db
    .deleteFrom('audit_log')
    .where('at', '<', sql<Date>`now() - make_interval(days => ${retentionDays})`)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/**
 * Runs `action` and records it: `ok` when it returns, `failed` when it throws (`denied` for a 401 or
 * 403), the error rethrown as it was. `target` may be worked out from the result (a new id).
 */
export async function audited<T>(
  c: Context<Env>,
  deps: { db: Db; logger: Logger },
  entry: Omit<AuditEntry, 'result' | 'target'> & { target?: string | ((result: T) => string) },
  action: () => Promise<T>,
): Promise<T> {
  const { target, ...rest } = entry;
  let result: T;
  try {
    result = await action();
  } catch (err) {
    const status = (err as { status?: unknown }).status;
    await audit(c, deps, {
      ...rest,
      target: typeof target === 'function' ? undefined : target,
      result: status === 401 || status === 403 ? 'denied' : 'failed',
    });
    throw err;
  }
  await audit(c, deps, { ...rest, target: typeof target === 'function' ? target(result) : target });
  return result;
}
