import { errorMessage } from '@wrenn/core';
import type { Db } from '../db/database.js';
import { notFound } from '../http/errors.js';
import { movePausedSandbox } from './fleet/sandbox-moves.js';
import { pauseSandbox, resumeSandbox, type SandboxLifecycleDeps } from './sandbox-lifecycle.js';

export interface DrainOutcome {
  moved: { sandbox_id: string; host_id: string; resumed: boolean }[];
  failed: { sandbox_id: string; message: string }[];
}

/**
 * Takes a host out of placement and moves its sandboxes to others: a paused one moves paused; a
 * running one is paused, moved and resumed there (its processes carry on after a pause's worth of
 * downtime). One sandbox at a time: each move is bounded by disk and network, not CPU. A sandbox
 * that cannot move stays where it was, in the state it was, and is listed with the reason.
 */
export async function drainHost(deps: SandboxLifecycleDeps, hostId: string): Promise<DrainOutcome> {
  const { db } = deps;
  await setDraining(db, hostId, true);
  const sandboxes = await db
    .selectFrom('sandboxes')
    .select(['id', 'status'])
    .where('host_id', '=', hostId)
    .where('status', 'in', ['running', 'paused', 'missing', 'pending'])
    .orderBy('created_at')
    .execute();
  const outcome: DrainOutcome = { moved: [], failed: [] };
  for (const { id, status } of sandboxes) {
    if (status === 'missing' || status === 'pending') {
      const why = status === 'missing' ? 'its host is unreachable' : 'it is being created';
      outcome.failed.push({ sandbox_id: id, message: `sandbox ${id} cannot move: ${why}` });
      continue;
    }
    try {
      if (status === 'running') await pauseSandbox(deps, id);
      const to = await movePausedSandbox(deps, id);
      if (status === 'running') await resumeSandbox(deps, id);
      outcome.moved.push({ sandbox_id: id, host_id: to, resumed: status === 'running' });
    } catch (err) {
      outcome.failed.push({ sandbox_id: id, message: errorMessage(err) });
      // Paused for the move that failed: back to how it was, where it was.
      if (status === 'running') await resumeSandbox(deps, id).catch(() => undefined);
    }
  }
  deps.logger?.info({ hostId, moved: outcome.moved.length, failed: outcome.failed }, 'host drained');
  return outcome;
}

/** Puts a drained host back into placement. */
export function undrainHost(deps: Pick<SandboxLifecycleDeps, 'db'>, hostId: string): Promise<void> {
  return setDraining(deps.db, hostId, false);
}

async function setDraining(db: Db, hostId: string, draining: boolean): Promise<void> {
  const host = await db
    .updateTable('hosts')
    .set({ draining })
    .where('id', '=', hostId)
    .where('status', '!=', 'deleted')
    .returning('id')
    .executeTakeFirst();
  if (!host) throw notFound('host', hostId);
}
