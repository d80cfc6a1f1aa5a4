import { sql } from 'kysely';
import { errorMessage, PeriodicTask, type Logger } from '@wrenn/core';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { hostagent } from '@wrenn/contracts';
import type { Db } from '../db/database.js';
import type { SandboxesTable } from '../db/schema.js';
import type { AgentClient } from '../http/app-types.js';
import type { Hosts } from './fleet/host-agents.js';
import { destroyUnknownSandboxes, sandboxesKnownOn } from './fleet/known-sandboxes.js';
import { flushMetrics } from './metrics-store.js';
import { releasing } from './sandbox-release.js';

type Status = SandboxesTable['status'];

const FROM_AGENT: Record<hostagent.SandboxStatus, Status> = {
  [hostagent.SandboxStatus.UNSPECIFIED]: 'error',
  [hostagent.SandboxStatus.PENDING]: 'pending',
  [hostagent.SandboxStatus.RUNNING]: 'running',
  [hostagent.SandboxStatus.PAUSED]: 'paused',
  [hostagent.SandboxStatus.STOPPED]: 'stopped',
  [hostagent.SandboxStatus.ERROR]: 'error',
};

export function statusFromAgent(status: hostagent.SandboxStatus): Status {
  return FROM_AGENT[status];
}

/** How often a create in flight renews its pending row (`updated_at`, the database's clock). */
export const CREATE_LEASE_RENEW_MS = 2000;
/**
 * A pending row the host does not have and nobody renewed for this long is a create whose request
 * died with its server (several renewals missed, so a busy database does not end a live create).
 */
export const ORPHANED_CREATE_MS = 10_000;

/**
 * Makes the database agree with the agent: a sandbox the agent paused for inactivity becomes
 * `paused`, one that died or vanished becomes `stopped` (with the agent's reason). It follows the
 * agent, with one exception: a sandbox created with `on_timeout: kill` (E2B's default) that the agent
 * paused for inactivity is destroyed. Returns the number of rows changed.
 */
export async function reconcile(
  db: Db,
  agent: Pick<AgentClient, 'listSandboxes' | 'flushSandboxMetrics' | 'destroySandbox'>,
  logger: Logger,
  opts: ReconcilerOptions = {},
): Promise<number> {
  const { sandboxes } = await agent.listSandboxes({}, { timeoutMs: LIST_TIMEOUT_MS });
  const onAgent = new Map(sandboxes.map((s) => [s.id, s]));
  let query = db
    .selectFrom('sandboxes')
    .select(['id', 'status', 'status_reason', 'auto_paused', 'on_timeout', 'oom_kills', 'updated_at'])
    .select(
      sql<boolean>`updated_at < now() - make_interval(secs => ${ORPHANED_CREATE_MS / 1000})`.as(
        'create_lease_lapsed',
      ),
    )
    .select((eb) =>
      eb
        .exists(
          eb
            .selectFrom('template_builds')
            .select('template_builds.id')
            .whereRef('template_builds.id', '=', 'sandboxes.build_id')
            .where('template_builds.status', 'in', ['ready', 'error', 'cancelled']),
        )
        .as('build_ended'),
    )
    .where('status', 'in', ['pending', 'running', 'paused'])
    // A sandbox moving between hosts is the move's to settle.
    .where('moving_to', 'is', null);
  const { hostId } = opts;
  if (hostId !== undefined)
    query = query.where((eb) =>
      opts.isStaticHost
        ? eb.or([eb('host_id', '=', hostId), eb('host_id', 'is', null)])
        : eb('host_id', '=', hostId),
    );
  const rows = await query.execute();
  /** Destroys the sandbox on the agent, then marks its row stopped with `reason`. */
  const destroyAndStop = async (id: string, reason: string) => {
    await releasing(opts, id, () => agent.destroySandbox({ sandboxId: id }));
    await db
      .updateTable('sandboxes')
      .set({ status: 'stopped', status_reason: reason, updated_at: new Date() })
      .where('id', '=', id)
      .execute();
  };
  let changed = 0;
  for (const row of rows) {
    const info = onAgent.get(row.id);
    if (info?.autoPaused && row.on_timeout === 'kill') {
      await destroyAndStop(row.id, 'timed out (on timeout: kill)');
      logger.info({ sandboxId: row.id }, 'timed out; destroyed (on timeout: kill)');
      changed++;
      continue;
    }
    // A template build's sandbox outlives its build only when the build's own destroy failed (its
    // agent was down): gone now.
    if (info && row.build_ended) {
      try {
        await destroyAndStop(row.id, 'its template build ended');
      } catch (err) {
        logger.warn(
          { sandboxId: row.id, err: errorMessage(err) },
          'could not destroy the sandbox of an ended template build',
        );
        continue;
      }
      logger.info({ sandboxId: row.id }, 'destroyed the sandbox of an ended template build');
      changed++;
      continue;
    }
    const orphaned = !info && row.status === 'pending';
    // A create still in flight is not on the agent's list yet: leave it to its request, unless the
    // request stopped renewing the row (its server died mid-create; nobody will finish it).
    if (orphaned && !row.create_lease_lapsed) continue;
    const next = orphaned
      ? {
          status: 'stopped' as const,
          status_reason: 'its create never finished (the control plane stopped during it)',
          auto_paused: false,
        }
      : info
        ? {
            status: statusFromAgent(info.status),
            status_reason: info.statusReason,
            auto_paused: info.autoPaused,
          }
        : {
            status: 'stopped' as const,
            status_reason: 'the host no longer has this sandbox',
            auto_paused: false,
          };
    // Processes killed for memory (the sandbox lived on): the agent counts, the row follows.
    const oom = info && info.oomKills !== row.oom_kills ? oomKillsFromAgent(info) : undefined;
    if (
      !oom &&
      next.status === row.status &&
      next.status_reason === row.status_reason &&
      next.auto_paused === row.auto_paused
    ) {
      continue;
    }
    if (oom)
      logger.info(
        { sandboxId: row.id, oomKills: oom.oom_kills, lastOomKill: oom.last_oom_kill },
        'processes killed for memory',
      );
    await db
      .updateTable('sandboxes')
      .set({ ...next, ...oom, updated_at: new Date() })
      .where('id', '=', row.id)
      // A request that changed the row since this pass read it (a snapshot's resume) knows better.
      .where('updated_at', '=', row.updated_at)
      .execute();
    logger.info(
      { sandboxId: row.id, from: row.status, to: next.status, reason: next.status_reason },
      'reconciled',
    );
    // Paused or stopped behind our back: whatever connections the proxy kept to it are dead.
    if (next.status !== 'running') opts.sandboxReleased?.(row.id);
    // Paused behind our back (the inactivity timeout): keep its metrics while it sleeps.
    if (next.status === 'paused' && row.status !== 'paused') {
      await flushMetrics(db, agent, row.id, ['10m', '2h', '24h']).catch((err: unknown) =>
        logger.warn({ sandboxId: row.id, err: errorMessage(err) }, 'could not store metrics'),
      );
    }
    changed++;
  }
  // Registered hosts' heartbeats destroy what a host holds that nobody knows (recordHeartbeat); the
  // static host sends none, so its pass does (say a build's sandbox whose destroy met a dead agent,
  // which adopted it on restart).
  if (opts.isStaticHost && hostId !== undefined) {
    const known = new Set((await sandboxesKnownOn(db, hostId, { isStaticHost: true })).map((r) => r.id));
    const unknown = sandboxes.map((s) => s.id).filter((id) => !known.has(id));
    await destroyUnknownSandboxes({ ...opts, logger }, agent, hostId, unknown);
    changed += unknown.length;
  }
  return changed;
}

/** The agent's count of OOM kills and its last one, as the row stores them. */
function oomKillsFromAgent(info: hostagent.Sandbox): { oom_kills: number; last_oom_kill: string | null } {
  const last = info.lastOomKill;
  return {
    oom_kills: info.oomKills,
    last_oom_kill: last
      ? JSON.stringify({
          at: last.at ? timestampDate(last.at).toISOString() : new Date().toISOString(),
          pid: last.pid,
          command: last.command,
          memory_bytes: Number(last.memoryBytes),
        })
      : null,
  };
}

export interface ReconcilerOptions {
  /** Between passes (ms); default 5 s. */
  intervalMs?: number;
  /** Only the sandboxes of this host (the static host's also takes rows from before the fleet). */
  hostId?: string;
  isStaticHost?: boolean;
  /** Told of every sandbox found paused or stopped, or destroyed here (see `ServerDeps`). */
  sandboxReleased?: (sandboxId: string) => void;
}

/** One pass over every online host, each against its own agent; a host that fails is logged and skipped. */
export async function reconcileHosts(
  db: Db,
  hosts: Pick<Hosts, 'agent'>,
  logger: Logger,
  opts: ReconcilerOptions = {},
): Promise<number> {
  const online = await db
    .selectFrom('hosts')
    .select(['id', 'is_static'])
    .where('status', '=', 'online')
    .execute();
  let changed = 0;
  // A few hosts at a time, each bounded by its list call's timeout: one host that does not answer
  // (cut off, not yet marked unreachable) must not hold up the others' passes.
  const queue = [...online];
  const worker = async () => {
    for (let host = queue.shift(); host; host = queue.shift()) {
      try {
        const agent = await hosts.agent(host.id);
        changed += await reconcile(db, agent, logger, {
          ...opts,
          hostId: host.id,
          isStaticHost: host.is_static,
        });
      } catch (err) {
        logger.warn({ hostId: host.id, err: errorMessage(err) }, 'reconcile pass failed');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(RECONCILE_CONCURRENCY, queue.length) }, worker));
  return changed;
}

const RECONCILE_CONCURRENCY = 8;
/** How long a host may take to list its sandboxes before its pass is skipped. */
export const LIST_TIMEOUT_MS = 5000;

/**
 * Runs `reconcileHosts` every `intervalMs`, one pass at a time, while `isLeader()` says this server
 * is the one that should (leader election: one reconciler per cluster).
 */
export function startReconciler(
  db: Db,
  hosts: Pick<Hosts, 'agent'>,
  logger: Logger,
  opts: ReconcilerOptions & { isLeader?: () => boolean } = {},
): { stop(): Promise<void> } {
  return new PeriodicTask(
    'reconciler',
    opts.intervalMs ?? 5000,
    async () => void (await reconcileHosts(db, hosts, logger, opts)),
    logger,
    opts.isLeader,
  ).start();
}
