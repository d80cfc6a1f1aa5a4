import { timestampDate } from '@bufbuild/protobuf/wkt';
import { errorMessage, type Logger } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import type { Db } from '../db/database.js';
import type { AgentClient } from '../http/app-types.js';
import type { Hosts } from './fleet/host-agents.js';

export type MetricsRange = '10m' | '2h' | '24h';

export const AGENT_METRICS_RANGE: Record<MetricsRange, hostagent.MetricsRange> = {
  '10m': hostagent.MetricsRange.METRICS_RANGE_10M,
  '2h': hostagent.MetricsRange.METRICS_RANGE_2H,
  '24h': hostagent.MetricsRange.METRICS_RANGE_24H,
};

export interface MetricPoint {
  time: string;
  cpu_used_pct: number;
  cpu_count: number;
  mem_used_bytes: number;
  mem_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
}

export function pointFromAgent(s: hostagent.MetricSample): MetricPoint {
  return {
    time: s.time ? timestampDate(s.time).toISOString() : new Date(0).toISOString(),
    cpu_used_pct: s.cpuUsedPct,
    cpu_count: s.cpuCount,
    mem_used_bytes: Number(s.memUsedBytes),
    mem_total_bytes: Number(s.memTotalBytes),
    disk_used_bytes: Number(s.diskUsedBytes),
    disk_total_bytes: Number(s.diskTotalBytes),
  };
}

/**
 * Takes the agent's metrics of a sandbox into the database (replacing what was stored for those
 * tiers): all tiers when it pauses (the agent may be restarted while it sleeps), the 24 h tier when
 * it is destroyed.
 */
export async function flushMetrics(
  db: Db,
  agent: Pick<AgentClient, 'flushSandboxMetrics'>,
  sandboxId: string,
  tiers: MetricsRange[],
): Promise<void> {
  const flushed = await agent.flushSandboxMetrics({ sandboxId });
  const byTier: Record<MetricsRange, hostagent.MetricSample[]> = {
    '10m': flushed.raw10m,
    '2h': flushed.avg30s2h,
    '24h': flushed.avg5m24h,
  };
  await db.transaction().execute(async (tx) => {
    await tx
      .deleteFrom('sandbox_metrics')
      .where('sandbox_id', '=', sandboxId)
      .where('tier', 'in', tiers)
      .execute();
    const rows = tiers.flatMap((tier) =>
      byTier[tier].map((s) => {
        const p = pointFromAgent(s);
        return { sandbox_id: sandboxId, tier, ...p, time: new Date(p.time) };
      }),
    );
    // PostgreSQL takes at most 65535 parameters per statement: insert in chunks.
    for (let i = 0; i < rows.length; i += 1000) {
      await tx
        .insertInto('sandbox_metrics')
        .values(rows.slice(i, i + 1000))
        .onConflict((oc) => oc.doNothing())
        .execute();
    }
  });
}

const flushing = new Map<string, Promise<void>>();

/**
 * `flushMetrics` after the caller has answered (a pause answers as soon as the agent has paused;
 * the flush is an agent call and a transaction more). A read of the sandbox's stored metrics in
 * this process waits for it. A failure is logged: the metrics of that pause are lost, the sandbox
 * is not.
 */
export function flushMetricsLater(
  db: Db,
  agent: Pick<AgentClient, 'flushSandboxMetrics'>,
  sandboxId: string,
  tiers: MetricsRange[],
  logger?: Logger,
): void {
  const run: Promise<void> = (flushing.get(sandboxId) ?? Promise.resolve())
    .then(() => flushMetrics(db, agent, sandboxId, tiers))
    .catch((err: unknown) =>
      logger?.warn({ sandboxId, err: errorMessage(err) }, 'could not store the metrics of a paused sandbox'),
    )
    .finally(() => {
      if (flushing.get(sandboxId) === run) flushing.delete(sandboxId);
    });
  flushing.set(sandboxId, run);
}

/**
 * A sandbox's metrics for `range`, for both APIs: from the agent while it runs, from the database
 * while it is paused (the agent may have restarted meanwhile).
 */
export async function sandboxMetrics(
  deps: { db: Db; hosts: Hosts },
  sandbox: { id: string; status: string; host_id: string | null },
  range: MetricsRange,
): Promise<MetricPoint[]> {
  if (sandbox.status === 'paused') {
    await flushing.get(sandbox.id);
    return storedMetrics(deps.db, sandbox.id, range);
  }
  const agent = await deps.hosts.agent(sandbox.host_id);
  const { samples } = await agent.getSandboxMetrics({
    sandboxId: sandbox.id,
    range: AGENT_METRICS_RANGE[range],
  });
  return samples.map(pointFromAgent);
}

export async function storedMetrics(db: Db, sandboxId: string, tier: MetricsRange): Promise<MetricPoint[]> {
  const rows = await db
    .selectFrom('sandbox_metrics')
    .selectAll()
    .where('sandbox_id', '=', sandboxId)
    .where('tier', '=', tier)
    .orderBy('time')
    .execute();
  return rows.map((r) => ({
    time: new Date(r.time).toISOString(),
    cpu_used_pct: r.cpu_used_pct,
    cpu_count: r.cpu_count,
    mem_used_bytes: Number(r.mem_used_bytes),
    mem_total_bytes: Number(r.mem_total_bytes),
    disk_used_bytes: Number(r.disk_used_bytes),
    disk_total_bytes: Number(r.disk_total_bytes),
  }));
}
