import { PeriodicTask, type Logger } from '@wrenn/core';
import { pruneRateLimits } from '../auth/rate-limits.js';
import type { Db } from '../db/database.js';
import { pruneAuditLog } from './audit.js';

export const AUDIT_RETENTION_DEFAULT_DAYS = 90;

/** One pass: audit entries past their retention, and rate-limit counters whose window ended. */
export async function pruneAuthRecords(
  db: Db,
  retentionDays: number,
): Promise<{ auditEntries: number; rateLimits: number }> {
  return { auditEntries: await pruneAuditLog(db, retentionDays), rateLimits: await pruneRateLimits(db) };
}

/**
 * Runs `pruneAuthRecords` every `intervalMs` (default an hour) while this server leads: one pass
 * per cluster, whichever replica holds the leader lock.
 */
export function startAuditRetention(
  db: Db,
  logger: Logger,
  opts: { retentionDays: number; intervalMs?: number; isLeader?: () => boolean },
): { stop(): Promise<void> } {
  return new PeriodicTask(
    'audit-retention',
    opts.intervalMs ?? 3_600_000,
    async () => {
      const pruned = await pruneAuthRecords(db, opts.retentionDays);
      if (pruned.auditEntries || pruned.rateLimits) logger.info(pruned, 'pruned audit log and rate limits');
    },
    logger,
    opts.isLeader,
  ).start();
}
