import { z } from '@hono/zod-openapi';
import type { Db } from '../db/database.js';
import { AUDIT_ACTIONS } from '../services/audit.js';

export const AuditEntrySchema = z
  .object({
    id: z.string().openapi({ description: 'Increasing; `before` pages by it' }),
    at: z.string(),
    actor_user_id: z.uuid().nullable().openapi({ description: 'The user (bearer token) who acted' }),
    actor_api_key_id: z.uuid().nullable().openapi({ description: 'The API key that acted' }),
    team_id: z.uuid().nullable(),
    action: z.enum(AUDIT_ACTIONS),
    target: z.string().nullable(),
    result: z.enum(['ok', 'denied', 'failed']),
    request_id: z.string().nullable().openapi({ description: "The request's X-Request-Id" }),
    ip: z
      .string()
      .nullable()
      .openapi({ description: "The client's address (forwarded only by trusted proxies)" }),
    details: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi('AuditEntry');

export const AuditPage = z
  .object({
    entries: z.array(AuditEntrySchema).openapi({ description: 'Newest first' }),
    next_before: z
      .string()
      .nullable()
      .openapi({ description: 'Pass as `before` for the next (older) page; null on the last page' }),
  })
  .openapi('AuditPage');

export const AuditQuery = z.object({
  action: z.enum(AUDIT_ACTIONS).optional().openapi({ description: 'Only this action' }),
  limit: z.coerce.number().int().min(1).max(500).default(100).optional(),
  before: z
    .string()
    .regex(/^\d{1,19}$/)
    .optional()
    .openapi({ description: 'Only entries older than this id (`next_before` of the previous page)' }),
});

/** One page of the audit log, newest first; `teamId` undefined: every team's (admins). */
export async function auditPage(
  db: Db,
  filter: { teamId?: string; action?: string; limit?: number; before?: string },
): Promise<z.infer<typeof AuditPage>> {
  const limit = filter.limit ?? 100;
  let query = db.selectFrom('audit_log').selectAll();
  if (filter.teamId) query = query.where('team_id', '=', filter.teamId);
  if (filter.action) query = query.where('action', '=', filter.action);
  if (filter.before) query = query.where('id', '<', filter.before);
  const rows = await query
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  const page = rows.slice(0, limit);
  return {
    entries: page.map((r) => ({
      id: String(r.id),
      at: new Date(r.at).toISOString(),
      actor_user_id: r.actor_user_id,
      actor_api_key_id: r.actor_api_key_id,
      team_id: r.team_id,
      action: r.action as (typeof AUDIT_ACTIONS)[number],
      target: r.target,
      result: r.result,
      request_id: r.request_id,
      ip: r.ip,
      details: r.details,
    })),
    next_before: rows.length > limit ? String(page[page.length - 1]!.id) : null,
  };
}
