import { sql } from 'kysely';
import { errorMessage, PeriodicTask, type Logger } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import { ApiError } from '../../http/errors.js';
import { assertTrustedCopy, copyArtifact } from './artifacts.js';
import type { Hosts } from './host-agents.js';
import { claimSettledPaused, destroyStaleCopy } from './sandbox-moves.js';

export interface ReplicaDeps {
  db: Db;
  hosts: Hosts;
  logger?: Logger;
}

/** How many sandboxes one pass copies (one after another: each is bound by disk and network). */
const PER_PASS = 4;
/** How often a copy in flight checks that it is still wanted (a resume at home drops it). */
const WATCH_MS = 500;

/**
 * One pass of the leader: every sandbox paused for longer than `afterSec` gets a copy on a second
 * host that placement would give it, so that when its own host is lost it resumes there (see
 * `promoteReplica`). First, copies that can no longer serve are dropped: on a host that is not online
 * or is draining, or of a sandbox no longer paused. Returns the sandboxes copied.
 */
export async function replicatePausedSandboxes(
  deps: ReplicaDeps,
  opts: { afterSec: number; signal?: AbortSignal },
): Promise<string[]> {
  const { db, logger } = deps;
  // Not copied again in the same pass: a copy another server left half-done may still be winding down.
  const dropped = await dropUnusableReplicas(deps);
  const candidates = await db
    .selectFrom('sandboxes')
    .innerJoin('hosts', 'hosts.id', 'sandboxes.host_id')
    .select([
      'sandboxes.id',
      'sandboxes.team_id',
      'sandboxes.host_id',
      'sandboxes.vcpus',
      'sandboxes.memory_mb',
      'sandboxes.disk_mb',
    ])
    .where('sandboxes.status', '=', 'paused')
    .where('sandboxes.replica_host_id', 'is', null)
    .where('sandboxes.moving_to', 'is', null)
    .where('sandboxes.updated_at', '<', sql<Date>`now() - make_interval(secs => ${opts.afterSec})`)
    .where('hosts.status', '=', 'online')
    .where('hosts.draining', '=', false)
    .orderBy('sandboxes.updated_at')
    .limit(PER_PASS)
    .execute();
  const copied: string[] = [];
  for (const row of candidates) {
    if (opts.signal?.aborted) break;
    if (dropped.has(row.id)) continue;
    const from = row.host_id!;
    let to: string | null;
    try {
      to = await deps.hosts.place(
        row.team_id,
        { vcpus: row.vcpus, memoryMb: row.memory_mb, diskMb: row.disk_mb },
        { exclude: [from] },
      );
      if (to) await assertTrustedCopy(db, from, to);
    } catch (err) {
      // One host, or none with room: nothing to copy to, which is not worth a warning every pass.
      if (!(err instanceof ApiError)) throw err;
      logger?.debug({ sandboxId: row.id, err: err.message }, 'no second host for a paused sandbox');
      continue;
    }
    if (to && (await copyReplica(deps, row.id, from, to, opts.signal))) copied.push(row.id);
  }
  return copied;
}

async function copyReplica(
  deps: ReplicaDeps,
  id: string,
  from: string,
  to: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const { db, hosts, logger } = deps;
  // Claimed before the copy starts, so `to`'s heartbeats keep what arrives there.
  if (!(await claimSettledPaused(db, id, from, { replica_host_id: to, replica_at: null }))) return false;
  const started = Date.now();
  const copy = new AbortController();
  const stop = () => copy.abort(signal?.reason);
  signal?.addEventListener('abort', stop, { once: true });
  // A resume, move or destroy (on any server) clears the claim; the export holds the sandbox on its
  // host meanwhile, so the copy gives way at once rather than make that request wait for it.
  const watch = setInterval(() => {
    void stillWanted(db, id, to)
      .then((wanted) => wanted || copy.abort(new Error('the sandbox no longer wants this copy')))
      .catch(() => undefined);
  }, WATCH_MS);
  try {
    await copyArtifact(hosts, from, to, { kind: 'sandbox', name: id }, copy.signal);
    const whole = await db
      .updateTable('sandboxes')
      .set({ replica_at: sql<Date>`now()` })
      .where('id', '=', id)
      .where('status', '=', 'paused')
      .where('replica_host_id', '=', to)
      .executeTakeFirst();
    if (Number(whole.numUpdatedRows) === 0) throw new Error('the sandbox changed while it was copied');
    logger?.info(
      { sandboxId: id, host: from, replicaHost: to, ms: Date.now() - started },
      'paused sandbox copied to a second host',
    );
    return true;
  } catch (err) {
    await clearReplica(db, id, to);
    await destroyStaleCopy(deps, to, id, 'debug');
    const level = copy.signal.aborted ? 'info' : 'warn';
    logger?.[level]({ sandboxId: id, replicaHost: to, err: errorMessage(err) }, 'paused sandbox not copied');
    return false;
  } finally {
    clearInterval(watch);
    signal?.removeEventListener('abort', stop);
  }
}

async function stillWanted(db: Db, id: string, to: string): Promise<boolean> {
  const row = await db
    .selectFrom('sandboxes')
    .select(['status', 'replica_host_id', 'moving_to'])
    .where('id', '=', id)
    .executeTakeFirst();
  return row?.status === 'paused' && row.replica_host_id === to && row.moving_to === null;
}

/**
 * Drops copies that can no longer serve: on a host that is not online or is draining (another host
 * gets one on a later pass), of a sandbox that is no longer paused or missing, and copies a leader
 * left half-done (passes never overlap, so at the start of one no copy of this leader's is in
 * flight). Each is destroyed where it is when that host answers; otherwise that host's next
 * heartbeat destroys it as unknown. Returns the sandboxes whose copy was dropped.
 */
async function dropUnusableReplicas(deps: ReplicaDeps): Promise<Set<string>> {
  const { db } = deps;
  const stale = await db
    .selectFrom('sandboxes')
    .innerJoin('hosts', 'hosts.id', 'sandboxes.replica_host_id')
    .select(['sandboxes.id', 'sandboxes.replica_host_id', 'hosts.status as host_status'])
    .where('sandboxes.replica_host_id', 'is not', null)
    .where((eb) =>
      eb.or([
        eb('sandboxes.replica_at', 'is', null),
        eb('hosts.status', '!=', 'online'),
        eb('hosts.draining', '=', true),
        eb('sandboxes.status', 'not in', ['paused', 'missing']),
      ]),
    )
    .execute();
  const dropped = new Set<string>();
  for (const row of stale) {
    if (!(await clearReplica(db, row.id, row.replica_host_id!))) continue;
    dropped.add(row.id);
    if (row.host_status === 'online') await destroyStaleCopy(deps, row.replica_host_id!, row.id, 'debug');
  }
  return dropped;
}

/**
 * Forgets the sandbox's copy on a second host and destroys it there (in the background: a resume
 * does not wait for it). Called before anything that makes the copy stale (resume, move, destroy).
 */
export async function dropReplica(deps: ReplicaDeps, id: string, replicaHostId: string): Promise<void> {
  if (await clearReplica(deps.db, id, replicaHostId)) void destroyStaleCopy(deps, replicaHostId, id, 'debug');
}

/**
 * A `missing` sandbox (its host stopped sending heartbeats) whose whole copy is on an online host
 * becomes that copy: the row's host is the replica's from now on, and the old host's copy is
 * destroyed by its next heartbeat (not its own any more). Throws 503 when there is no such copy.
 */
export async function promoteReplica(deps: ReplicaDeps, id: string): Promise<string> {
  const { db, logger } = deps;
  const promoted = await db
    .updateTable('sandboxes')
    .set((eb) => ({
      host_id: eb.ref('replica_host_id'),
      replica_host_id: null,
      replica_at: null,
      status: 'paused',
      status_reason: '',
      updated_at: new Date(),
    }))
    .where('id', '=', id)
    .where('status', '=', 'missing')
    .where('replica_at', 'is not', null)
    .where((eb) =>
      eb.exists(
        eb
          .selectFrom('hosts')
          .select('hosts.id')
          .whereRef('hosts.id', '=', 'sandboxes.replica_host_id')
          .where('hosts.status', '=', 'online')
          .where('hosts.draining', '=', false),
      ),
    )
    .returning('host_id')
    .executeTakeFirst();
  if (!promoted?.host_id)
    throw new ApiError(
      503,
      'unavailable',
      `sandbox ${id} is missing: its host stopped sending heartbeats and no whole copy of it is on another online host; it comes back with its host`,
    );
  logger?.warn(
    { sandboxId: id, host: promoted.host_id },
    'its host is lost: the sandbox resumes from its copy',
  );
  return promoted.host_id;
}

async function clearReplica(db: Db, id: string, replicaHostId: string): Promise<boolean> {
  const result = await db
    .updateTable('sandboxes')
    .set({ replica_host_id: null, replica_at: null })
    .where('id', '=', id)
    .where('replica_host_id', '=', replicaHostId)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Runs `replicatePausedSandboxes` while `isLeader()`; `stop` cuts a copy in flight short. */
export function startPausedReplicas(
  deps: ReplicaDeps & { logger: Logger },
  opts: { afterSec: number; intervalMs?: number; isLeader: () => boolean },
): { stop(): Promise<void> } {
  const shutdown = new AbortController();
  const task = new PeriodicTask(
    'paused-replicas',
    opts.intervalMs ?? Math.min(10_000, Math.max(500, (opts.afterSec * 1000) / 2)),
    async () =>
      void (await replicatePausedSandboxes(deps, { afterSec: opts.afterSec, signal: shutdown.signal })),
    deps.logger,
    opts.isLeader,
  ).start();
  return {
    async stop() {
      shutdown.abort(new Error('the server is stopping'));
      await task.stop();
    },
  };
}
