import { sql, type UpdateObject } from 'kysely';
import { errorMessage, pollUntil, type Logger } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import type { Database } from '../../db/schema.js';
import { ApiError, badRequest, notFound } from '../../http/errors.js';
import { releasing } from '../sandbox-release.js';
import { assertTrustedCopy, copyArtifact } from './artifacts.js';
import type { Hosts } from './host-agents.js';
import { dropReplica } from './paused-replicas.js';

export interface MoveDeps {
  db: Db;
  hosts: Hosts;
  logger?: Logger;
  sandboxReleased?: (sandboxId: string) => void;
}

const notMovable = (message: string) => new ApiError(409, 'failed_precondition', message);

/** A move whose server died mid-way is given up after this long; both hosts' heartbeats then settle it. */
export const MOVE_STALE_MS = 30 * 60_000;

/**
 * Moves a paused sandbox to another host (`to`, else where placement puts it, never its own): its
 * checkpoint, disk and state are copied through the control plane, the row follows, and then the
 * old host's copy is destroyed. While it moves, `moving_to` keeps both hosts' heartbeats from
 * destroying the copy they hold. A failure leaves it paused where it was. Returns the new host.
 */
export async function movePausedSandbox(
  deps: MoveDeps,
  id: string,
  opts: { to?: string; signal?: AbortSignal } = {},
): Promise<string> {
  const { db, hosts, logger } = deps;
  // A copy to a second host in flight is waited for: it either becomes whole (and the move is just
  // the row following it) or is given up; two transfers of one sandbox never race on one host.
  const found = await pollUntil(
    async () => {
      const r = await movableRow(db, id);
      return r?.replica_host_id && !r.replica_at ? undefined : { r };
    },
    { timeoutMs: MOVE_STALE_MS, intervalMs: 250, signal: opts.signal },
  );
  if (!found) throw notMovable(`sandbox ${id} is being copied to a second host; try again later`);
  const row = found.r;
  if (!row || row.status === 'stopped') throw notFound('sandbox', id);
  if (row.status !== 'paused')
    throw notMovable(`sandbox ${id} is ${row.status}: only a paused sandbox moves (pause it first)`);
  if (!row.host_id) throw notMovable(`sandbox ${id} has no host recorded`);
  const from = row.host_id;
  if (opts.to === from) throw badRequest('host_id', `sandbox ${id} is already on host ${from}`);
  // Placement decides (eligible for the team, online, not draining, room for it); a host asked for
  // must be the one it would take. The host of its copy is preferred: nothing to copy.
  const replica = row.replica_host_id;
  const to = await hosts.place(
    row.team_id,
    { vcpus: row.vcpus, memoryMb: row.memory_mb, diskMb: row.disk_mb },
    { exclude: [from], prefer: opts.to ? [opts.to] : replica ? [replica] : undefined },
  );
  if (!to) throw new ApiError(503, 'unavailable', 'no host can take the sandbox');
  if (opts.to && to !== opts.to)
    throw notMovable(
      `host_id: host ${opts.to} cannot take sandbox ${id} (not one of its team's hosts, not online, draining, or full)`,
    );
  await assertTrustedCopy(db, from, to);
  if (replica && to === replica) return takeReplica(deps, id, from, to);
  if (replica) await dropReplica(deps, id, replica);
  const claimed = await claimSettledPaused(db, id, from, {
    moving_to: to,
    moving_since: sql<Date>`now()`,
    updated_at: new Date(),
  });
  if (!claimed) throw notMovable(`sandbox ${id} is already moving, or changed while the move was prepared`);
  const started = Date.now();
  try {
    await releasing(deps, id, () =>
      copyArtifact(hosts, from, to, { kind: 'sandbox', name: id }, opts.signal),
    );
    await db
      .updateTable('sandboxes')
      .set({ host_id: to, moving_to: null, moving_since: null, updated_at: new Date() })
      .where('id', '=', id)
      .execute();
  } catch (err) {
    await db
      .updateTable('sandboxes')
      .set({ moving_to: null, moving_since: null, updated_at: new Date() })
      .where('id', '=', id)
      .where('moving_to', '=', to)
      .execute();
    // The target may hold a whole copy if only its answer was lost; the sandbox is not its.
    await destroyStaleCopy(deps, to, id, 'debug');
    logger?.warn(
      { sandboxId: id, from, to, err: errorMessage(err) },
      'move failed; the sandbox stays paused where it was',
    );
    throw err;
  }
  await destroyStaleCopy(deps, from, id);
  logger?.info({ sandboxId: id, from, to, ms: Date.now() - started }, 'paused sandbox moved to another host');
  return to;
}

/**
 * Sets `changes` on a sandbox that is paused on `from` with nothing under way (no move, no copy to
 * a second host): the compare-and-set that starts a transfer. False when it is not so any more.
 */
export async function claimSettledPaused(
  db: Db,
  id: string,
  from: string,
  changes: UpdateObject<Database, 'sandboxes'>,
): Promise<boolean> {
  const claimed = await db
    .updateTable('sandboxes')
    .set(changes)
    .where('id', '=', id)
    .where('status', '=', 'paused')
    .where('host_id', '=', from)
    .where('moving_to', 'is', null)
    .where('replica_host_id', 'is', null)
    .executeTakeFirst();
  return Number(claimed.numUpdatedRows) > 0;
}

function movableRow(db: Db, id: string) {
  return db
    .selectFrom('sandboxes')
    .select([
      'id',
      'team_id',
      'host_id',
      'status',
      'vcpus',
      'memory_mb',
      'disk_mb',
      'replica_host_id',
      'replica_at',
    ])
    .where('id', '=', id)
    .executeTakeFirst();
}

/** The move of a sandbox to the host that holds a whole copy of it: the row follows, nothing is copied. */
async function takeReplica(deps: MoveDeps, id: string, from: string, to: string): Promise<string> {
  const taken = await deps.db
    .updateTable('sandboxes')
    .set({ host_id: to, replica_host_id: null, replica_at: null, updated_at: new Date() })
    .where('id', '=', id)
    .where('status', '=', 'paused')
    .where('host_id', '=', from)
    .where('moving_to', 'is', null)
    .where('replica_host_id', '=', to)
    .where('replica_at', 'is not', null)
    .executeTakeFirst();
  if (Number(taken.numUpdatedRows) === 0)
    throw notMovable(`sandbox ${id} changed while the move was prepared; try again`);
  await destroyStaleCopy(deps, from, id);
  deps.logger?.info({ sandboxId: id, from, to }, 'paused sandbox moved to the host of its copy');
  return to;
}

/**
 * Destroys what host `hostId` holds of sandbox `id` that is no longer the sandbox: the old host's
 * copy after a move, a copy a failed move or a dropped replica left. Should that fail, the host's
 * next heartbeat destroys it as a sandbox that is not its own; the failure is logged at `level`.
 */
export async function destroyStaleCopy(
  deps: Pick<MoveDeps, 'hosts' | 'logger'>,
  hostId: string,
  id: string,
  level: 'warn' | 'debug' = 'warn',
): Promise<void> {
  try {
    await (await deps.hosts.agent(hostId)).destroySandbox({ sandboxId: id }, { timeoutMs: 30_000 });
  } catch (err) {
    deps.logger?.[level](
      { sandboxId: id, hostId, err: errorMessage(err) },
      'could not destroy a copy that is no longer the sandbox (its host’s next heartbeat will)',
    );
  }
}

/** Moves that a server which died left half-done: given up, so the hosts' heartbeats settle them. */
export async function abandonStaleMoves(db: Db, logger?: Logger): Promise<number> {
  const result = await db
    .updateTable('sandboxes')
    .set({ moving_to: null, moving_since: null, updated_at: new Date() })
    .where('moving_to', 'is not', null)
    .where('moving_since', '<', sql<Date>`now() - make_interval(secs => ${MOVE_STALE_MS / 1000})`)
    .executeTakeFirst();
  const n = Number(result.numUpdatedRows);
  if (n) logger?.warn({ moves: n }, 'gave up moves a server left half-done');
  return n;
}
