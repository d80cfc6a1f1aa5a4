import { sql } from 'kysely';
import { PeriodicTask, type Logger } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import { abandonStaleMoves } from './sandbox-moves.js';

export const MISSING_REASON = 'its host stopped sending heartbeats';

/**
 * Registered hosts whose last heartbeat is older than `staleSec` become `unreachable`, and their
 * running and paused sandboxes `missing` (reversible: the host's next heartbeat reconciles them).
 * The static host is never marked. Returns the hosts marked. Times are the database's, so every
 * replica agrees on them.
 */
export async function markStaleHosts(db: Db, staleSec: number, logger: Logger): Promise<string[]> {
  return db.transaction().execute(async (tx) => {
    const stale = await tx
      .updateTable('hosts')
      .set({ status: 'unreachable' })
      .where('status', '=', 'online')
      .where('is_static', '=', false)
      .where(
        sql<boolean>`coalesce(last_heartbeat_at, registered_at, created_at) < now() - make_interval(secs => ${staleSec})`,
      )
      .returning('id')
      .execute();
    const ids = stale.map((h) => h.id);
    if (ids.length === 0) return ids;
    const missing = await tx
      .updateTable('sandboxes')
      .set({ status: 'missing', status_reason: MISSING_REASON, updated_at: new Date() })
      .where('host_id', 'in', ids)
      .where('status', 'in', ['running', 'paused'])
      .returning('id')
      .execute();
    logger.warn(
      { hosts: ids, sandboxes: missing.length },
      'hosts unreachable: no heartbeat; their sandboxes are missing',
    );
    return ids;
  });
}

/** Runs `markStaleHosts` (and gives up moves a dead server left) every `intervalMs` while `isLeader()` (one monitor per cluster). */
export function startHostMonitor(
  db: Db,
  logger: Logger,
  opts: { staleSec: number; intervalMs?: number; isLeader: () => boolean },
): { stop(): Promise<void> } {
  // Several checks per stale window, so a host is marked soon after it goes quiet.
  const intervalMs = opts.intervalMs ?? Math.min(5000, Math.max(200, (opts.staleSec * 1000) / 3));
  return new PeriodicTask(
    'host-monitor',
    intervalMs,
    async () => {
      await markStaleHosts(db, opts.staleSec, logger);
      await abandonStaleMoves(db, logger);
    },
    logger,
    opts.isLeader,
  ).start();
}
