import { sql } from 'kysely';
import { errorMessage, type Logger } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import type { HostLoad, SandboxesTable } from '../../db/schema.js';
import { resumeSandbox, type SandboxLifecycleDeps } from '../sandbox-lifecycle.js';
import { runHostCleanups } from './artifacts.js';
import type { Hosts } from './host-agents.js';
import { destroyUnknownSandboxes, sandboxesKnownOn } from './known-sandboxes.js';

export type ReportedStatus = 'running' | 'paused' | 'pending' | 'stopped' | 'error';

/** What an agent says in its heartbeat. */
export interface HeartbeatReport {
  capacity: { cpu_cores: number; memory_mb: number; disk_mb: number };
  load: HostLoad;
  sandboxes: { id: string; status: ReportedStatus; paused_unsupervised?: boolean }[];
}

export interface HeartbeatOutcome {
  /** The host had been unreachable. */
  returned: boolean;
  /** Missing sandboxes it still holds, given their state back. */
  restored: string[];
  /** Missing sandboxes it no longer holds, now stopped. */
  stopped: string[];
  /** Sandboxes it holds that the control plane does not know (or thinks stopped): destroyed on it. */
  destroyed: string[];
  /** Sandboxes its PauseAll paused: being resumed. */
  resuming: string[];
}

/**
 * Records a heartbeat (capacity, load, counts; the host is online) and reconciles the host from its
 * list: a `missing` sandbox it holds gets its state back, one it no longer holds becomes `stopped`,
 * and one the control plane does not know, or thinks stopped, is destroyed on it. Rows are always
 * written before their create reaches an agent, so an unknown sandbox is never a create in flight.
 */
export async function recordHeartbeat(
  deps: { db: Db; hosts: Hosts; logger: Logger; sandboxReleased?: (sandboxId: string) => void },
  hostId: string,
  report: HeartbeatReport,
): Promise<HeartbeatOutcome> {
  const { db, logger } = deps;
  const count = (status: ReportedStatus) => report.sandboxes.filter((s) => s.status === status).length;
  const before = await db.transaction().execute(async (tx) => {
    const host = await tx
      .selectFrom('hosts')
      .select('status')
      .where('id', '=', hostId)
      .where('status', 'in', ['online', 'unreachable'])
      .forUpdate()
      .executeTakeFirst();
    if (!host) return undefined;
    await tx
      .updateTable('hosts')
      .set({
        status: 'online',
        cpu_cores: report.capacity.cpu_cores,
        memory_mb: report.capacity.memory_mb,
        disk_mb: report.capacity.disk_mb,
        load: JSON.stringify(report.load),
        running_count: count('running'),
        paused_count: count('paused'),
        last_heartbeat_at: sql<Date>`now()`,
      })
      .where('id', '=', hostId)
      .execute();
    return { previous: host.status };
  });
  if (!before) throw new Error(`host ${hostId} is not registered`);

  const reported = new Map(report.sandboxes.map((s) => [s.id, s.status]));
  const rows = await sandboxesKnownOn(db, hostId);
  // A sandbox on its way in or out is known to both hosts until the move settles; a paused one's
  // copy (`replica_host_id`) is known to the host that keeps it.
  const known = new Map(rows.map((r) => [r.id, r]));
  const outcome: HeartbeatOutcome = {
    returned: before.previous === 'unreachable',
    restored: [],
    stopped: [],
    destroyed: [],
    resuming: [],
  };
  for (const row of rows) {
    if (row.status !== 'missing' || row.host_id !== hostId) continue;
    const status = reported.get(row.id);
    const next: SandboxesTable['status'] = status === undefined ? 'stopped' : status;
    await db
      .updateTable('sandboxes')
      .set({
        status: next,
        status_reason: status === undefined ? 'the host no longer has this sandbox' : '',
        updated_at: new Date(),
      })
      .where('id', '=', row.id)
      .where('status', '=', 'missing')
      .execute();
    (status === undefined ? outcome.stopped : outcome.restored).push(row.id);
    deps.sandboxReleased?.(row.id);
  }
  for (const [id] of reported) if (!known.has(id)) outcome.destroyed.push(id);
  if (outcome.destroyed.length > 0)
    await destroyUnknownSandboxes(deps, await deps.hosts.agent(hostId), hostId, outcome.destroyed);
  for (const sandbox of report.sandboxes) {
    const row = known.get(sandbox.id);
    if (
      sandbox.paused_unsupervised &&
      sandbox.status === 'paused' &&
      row?.host_id === hostId &&
      !row.moving_to
    )
      outcome.resuming.push(sandbox.id);
  }
  for (const id of outcome.resuming) resumeUnsupervised(deps, id);
  void runHostCleanups(deps, hostId).catch((err: unknown) =>
    logger.warn({ hostId, err: errorMessage(err) }, 'host cleanups failed; retried next heartbeat'),
  );
  if (
    outcome.returned ||
    outcome.restored.length ||
    outcome.stopped.length ||
    outcome.destroyed.length ||
    outcome.resuming.length
  )
    logger.info({ hostId, ...outcome }, 'host reconciled from its heartbeat');
  return outcome;
}

const resumingNow = new Set<string>();

/**
 * Resumes a sandbox the agent paused for want of supervision (PauseAll), in the background: the
 * heartbeat is answered first. One attempt at a time per sandbox; a failure waits for the next
 * heartbeat that still reports it.
 */
function resumeUnsupervised(deps: SandboxLifecycleDeps & { logger: Logger }, id: string): void {
  if (resumingNow.has(id)) return;
  resumingNow.add(id);
  resumeSandbox(deps, id)
    .then(() => deps.logger.info({ sandboxId: id }, 'resumed what PauseAll paused'))
    .catch((err: unknown) =>
      deps.logger.warn({ sandboxId: id, err: errorMessage(err) }, 'could not resume what PauseAll paused'),
    )
    .finally(() => resumingNow.delete(id));
}
