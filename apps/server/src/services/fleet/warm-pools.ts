import { sql } from 'kysely';
import { Code, ConnectError, errorMessage, PeriodicTask, type Logger, UUID_PATTERN } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { Db } from '../../db/database.js';
import type { HostWarmPool } from '../../db/schema.js';
import { badRequest, notFound } from '../../http/errors.js';
import { agentSnapshotName, isAgentSnapshotName } from '../templates.js';
import type { Hosts } from './host-agents.js';

export interface WarmPoolDeps {
  db: Db;
  hosts: Hosts;
  logger?: Logger;
}

const LIST_TIMEOUT_MS = 5000;
const SYNC_CONCURRENCY = 4;

interface OnlineHost {
  id: string;
  kind: 'platform' | 'byoc';
  team_id: string | null;
  draining: boolean;
}

/** What one host was asked to keep, and how it answered. */
export interface HostSync {
  hostId: string;
  /** Pools set on it this pass (template → size). */
  set: Record<string, number>;
  /** Templates it refused, with its words (it lacks the template, …). */
  errors: Record<string, { code: Code; message: string }>;
  /** It could not be asked at all. */
  unreachable?: string;
}

/**
 * What each online host should keep: a platform template's pool on every platform host, a team
 * snapshot's on the hosts that hold its files and may run that team's sandboxes; a draining host
 * keeps none. Templates without a row are the agent's own business (`WRENN_WARM_POOL`).
 */
async function desiredSizes(db: Db, hosts: OnlineHost[]): Promise<Map<string, Map<string, number>>> {
  const pools = await db
    .selectFrom('warm_pools')
    .leftJoin('templates', 'templates.id', 'warm_pools.template_id')
    .leftJoin('teams', 'teams.id', 'templates.team_id')
    .select([
      'warm_pools.template',
      'warm_pools.template_id',
      'warm_pools.size',
      'templates.team_id',
      'teams.is_byoc',
    ])
    .execute();
  const snapshotIds = pools.flatMap((p) => (p.template_id ? [p.template_id] : []));
  const holders = snapshotIds.length
    ? await db
        .selectFrom('template_replicas')
        .select(['template_id', 'host_id'])
        .where('template_id', 'in', snapshotIds)
        .execute()
    : [];
  const held = new Set(holders.map((h) => `${h.template_id}@${h.host_id}`));
  const desired = new Map<string, Map<string, number>>();
  for (const host of hosts) {
    const sizes = new Map<string, number>();
    for (const pool of pools) {
      const eligible = pool.template_id
        ? held.has(`${pool.template_id}@${host.id}`) &&
          (pool.is_byoc ? host.kind === 'byoc' && host.team_id === pool.team_id : host.kind === 'platform')
        : host.kind === 'platform';
      sizes.set(pool.template, eligible && !host.draining ? pool.size : 0);
    }
    desired.set(host.id, sizes);
  }
  return desired;
}

/**
 * One pass: every online host's pools are read, set where they differ from what it should keep (an
 * agent that restarted, a host that joined or started draining, a snapshot copied to it), and what
 * it reports is kept on its row for the API and for placement.
 */
export async function syncWarmPools(deps: WarmPoolDeps): Promise<HostSync[]> {
  const { db } = deps;
  const hosts = await db
    .selectFrom('hosts')
    .select(['id', 'kind', 'team_id', 'draining', 'warm_pools'])
    .where('status', '=', 'online')
    .execute();
  const desired = await desiredSizes(db, hosts);
  const results: HostSync[] = [];
  const queue = [...hosts];
  const worker = async () => {
    for (let host = queue.shift(); host; host = queue.shift())
      results.push(await syncHost(deps, host, desired.get(host.id)!));
  };
  await Promise.all(Array.from({ length: Math.min(SYNC_CONCURRENCY, queue.length) }, worker));
  return results;
}

async function syncHost(
  deps: WarmPoolDeps,
  host: { id: string; warm_pools: HostWarmPool[] | null },
  sizes: Map<string, number>,
): Promise<HostSync> {
  const { db, logger } = deps;
  const hostId = host.id;
  const result: HostSync = { hostId, set: {}, errors: {} };
  let pools: hostagent.WarmPool[];
  let agent: Awaited<ReturnType<Hosts['agent']>>;
  try {
    agent = await deps.hosts.agent(hostId);
    pools = (await agent.listWarmPools({}, { timeoutMs: LIST_TIMEOUT_MS })).pools;
  } catch (err) {
    result.unreachable = errorMessage(err);
    return result;
  }
  const byTemplate = new Map(pools.map((p) => [p.template, p]));
  for (const [template, size] of sizes) {
    if ((byTemplate.get(template)?.size ?? 0) === size) continue;
    try {
      const { pool } = await agent.setWarmPool({ template, size }, { timeoutMs: 60_000 });
      if (pool) byTemplate.set(template, pool);
      result.set[template] = size;
      logger?.info({ hostId, template, size }, 'warm pool size set on host');
    } catch (err) {
      const { code, rawMessage } = ConnectError.from(err);
      result.errors[template] = { code, message: rawMessage };
      // A platform host without the image is not worth a warning every pass.
      if (code !== Code.NotFound)
        logger?.warn({ hostId, template, size, err: rawMessage }, 'could not set a warm pool on host');
    }
  }
  const reported: HostWarmPool[] = [...byTemplate.values()].map((p) => ({
    template: p.template,
    size: p.size,
    ready: p.ready,
    claims: Number(p.claims),
    misses: Number(p.misses),
    refills: Number(p.refills),
    failures: p.failures,
    last_error: p.lastError,
  }));
  // A host with no pools, as before, costs the pass no write (most hosts of a fleet, most passes).
  if (reported.length === 0 && !host.warm_pools?.length) return result;
  await db
    .updateTable('hosts')
    .set({ warm_pools: JSON.stringify(reported), warm_pools_at: sql<Date>`now()` })
    .where('id', '=', hostId)
    .execute();
  return result;
}

/**
 * Sets the size of a template's pool on every host that may serve it: `ref` is a platform
 * template's name (`base`) or a team snapshot's id. Applied at once to the online hosts; hosts
 * that join or return get it from the leader's next pass. A platform template that no online
 * eligible host has is refused (404), and not kept.
 */
export async function setWarmPoolSize(
  deps: WarmPoolDeps,
  ref: string,
  size: number,
): Promise<{ template: string; template_id: string | null; hosts: HostSync[] }> {
  const { db } = deps;
  let template: string;
  let templateId: string | null = null;
  if (UUID_PATTERN.test(ref)) {
    const row = await db.selectFrom('templates').select('id').where('id', '=', ref).executeTakeFirst();
    if (!row) throw notFound('template', ref);
    template = agentSnapshotName(row.id);
    templateId = row.id;
  } else {
    if (isAgentSnapshotName(ref))
      throw badRequest('template', "a team snapshot's pool is set by the snapshot's id");
    template = ref;
  }
  const previous = await db
    .selectFrom('warm_pools')
    .select('size')
    .where('template', '=', template)
    .executeTakeFirst();
  await db
    .insertInto('warm_pools')
    .values({ template, template_id: templateId, size })
    .onConflict((oc) => oc.column('template').doUpdateSet({ size, updated_at: new Date() }))
    .execute();
  const hosts = await syncWarmPools(deps);
  const asked = hosts.filter((h) => !h.unreachable && (template in h.set || template in h.errors));
  if (
    size > 0 &&
    asked.length > 0 &&
    asked.every((h) => h.errors[template]?.code === Code.NotFound) &&
    !templateId
  ) {
    // Nobody has it: put things back as they were.
    if (previous)
      await db
        .updateTable('warm_pools')
        .set({ size: previous.size })
        .where('template', '=', template)
        .execute();
    else await db.deleteFrom('warm_pools').where('template', '=', template).execute();
    throw notFound('template', ref);
  }
  return { template, template_id: templateId, hosts };
}

/** Keeps every host's pools as the table says, every `intervalMs`, while `isLeader()`. */
export function startWarmPoolSync(
  deps: WarmPoolDeps & { logger: Logger },
  opts: { intervalMs?: number; isLeader: () => boolean },
): { stop(): Promise<void> } {
  return new PeriodicTask(
    'warm-pools',
    opts.intervalMs ?? 10_000,
    async () => void (await syncWarmPools(deps)),
    deps.logger,
    opts.isLeader,
  ).start();
}
