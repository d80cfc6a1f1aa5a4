import { sql } from 'kysely';
import type { PlacementConfig } from '../../config.js';
import type { Db } from '../../db/database.js';
import { ApiError } from '../../http/errors.js';

/** What a new sandbox asks of its host. */
export interface SandboxNeed {
  vcpus: number;
  memoryMb: number;
  diskMb: number;
}

/** What the agent gives a sandbox created without sizes (apps/agent's SIZE_DEFAULTS). */
export const DEFAULT_NEED: SandboxNeed = { vcpus: 1, memoryMb: 512, diskMb: 4096 };

const RESOURCES = ['cpu', 'memory', 'disk'] as const;
type Resource = (typeof RESOURCES)[number];

export interface HostHeadroom {
  id: string;
  /** Undefined: the host's capacity is unknown (the static host), so it always fits, ranked last. */
  free?: Record<Resource, { allowed: number; left: number }>;
  /** Templates of which it had a pooled sandbox ready when the leader last looked. */
  pooled?: string[];
}

/** Where a sandbox may go besides what placement weighs. */
export interface PlacementHints {
  /** Hosts that hold what it is made from (a snapshot): the best of them when one fits. */
  prefer?: readonly string[];
  /** Hosts it must not go to (the one it is moving away from). */
  exclude?: readonly string[];
  /**
   * The agent's name of its template: a host with a warm pool of it that had a sandbox ready is
   * preferred over `prefer` (a claim beats a restore from files already there).
   */
  template?: string;
}

/**
 * The host a new sandbox of `teamId` goes to: among the online hosts it may use (a BYOC team's own,
 * else the platform's; none draining), the one whose tightest resource keeps the largest share
 * free after the sandbox is placed, a preferred one first when any fits (a pooled sandbox of its
 * template ready there, else its files need no copy).
 * Headroom = capacity × over-commit − reserve − what its sandboxes ask (pending and running fully,
 * paused by `pausedWeight` for CPU and memory, fully for disk). Nothing fits → 503 naming why.
 */
export async function placeSandbox(
  db: Db,
  config: PlacementConfig,
  teamId: string,
  need: SandboxNeed,
  hints: PlacementHints = {},
): Promise<string> {
  const hosts = await hostHeadroom(db, config, teamId);
  if (hints.exclude?.length) hosts.list = hosts.list.filter((h) => !hints.exclude!.includes(h.id));
  if (hosts.isByoc && hosts.list.length === 0)
    throw unavailable("no host can take the sandbox: none of the team's own hosts is online");
  if (hosts.list.length === 0) throw unavailable('no host can take the sandbox: no platform host is online');
  const short = new Map<Resource, number>();
  const pooled = hints.template
    ? hosts.list.filter((h) => h.pooled?.includes(hints.template!)).map((h) => h.id)
    : [];
  const preferred = new Set(pooled.length ? pooled : hints.prefer);
  let best: { id: string; score: number; preferred: boolean } | undefined;
  for (const host of hosts.list) {
    let score = 0;
    if (host.free) {
      const lacking = RESOURCES.find((r) => host.free![r].left < needOf(need, r));
      if (lacking) {
        short.set(lacking, (short.get(lacking) ?? 0) + 1);
        continue;
      }
      score = Math.min(
        ...RESOURCES.map((r) => {
          const { allowed, left } = host.free![r];
          return allowed > 0 ? (left - needOf(need, r)) / allowed : 0;
        }),
      );
    } else {
      score = -1; // unknown capacity: used when nothing known fits
    }
    const isPreferred = preferred.has(host.id);
    const better =
      !best || (isPreferred && !best.preferred) || (isPreferred === best.preferred && score > best.score);
    if (better) best = { id: host.id, score, preferred: isPreferred };
  }
  if (best) return best.id;
  const why = [...short].map(([r, n]) => `${r} on ${n} host${n === 1 ? '' : 's'}`).join(', ');
  throw unavailable(`no host can take the sandbox: not enough ${why}`);
}

/** The team's eligible online hosts with what each has left. */
export async function hostHeadroom(db: Db, config: PlacementConfig, teamId: string) {
  const team = await db.selectFrom('teams').select('is_byoc').where('id', '=', teamId).executeTakeFirst();
  const isByoc = team?.is_byoc ?? false;
  let query = db
    .selectFrom('hosts')
    .select(['id', 'cpu_cores', 'memory_mb', 'disk_mb', 'warm_pools'])
    .where('status', '=', 'online')
    .where('draining', '=', false);
  query = isByoc
    ? query.where('kind', '=', 'byoc').where('team_id', '=', teamId)
    : query.where('kind', '=', 'platform');
  const rows = await query.execute();
  const usage = await usageByHost(
    db,
    config.pausedWeight,
    rows.map((r) => r.id),
  );
  const { overcommit, reserve } = config;
  const list: HostHeadroom[] = rows.map((r) => {
    const pooled = r.warm_pools?.filter((p) => p.ready > 0).map((p) => p.template);
    if (r.cpu_cores === null || r.memory_mb === null || r.disk_mb === null) return { id: r.id, pooled };
    const used = usage.get(r.id) ?? { cpu: 0, memory: 0, disk: 0 };
    const allowed = {
      cpu: r.cpu_cores * overcommit.cpu - reserve.cpu,
      memory: r.memory_mb * overcommit.memory - reserve.memoryMb,
      disk: r.disk_mb * overcommit.disk - reserve.diskMb,
    };
    const free = Object.fromEntries(
      RESOURCES.map((res) => [res, { allowed: allowed[res], left: allowed[res] - used[res] }]),
    ) as Record<Resource, { allowed: number; left: number }>;
    return { id: r.id, free, pooled };
  });
  return { isByoc, list };
}

async function usageByHost(db: Db, pausedWeight: number, hostIds: string[]) {
  const usage = new Map<string, Record<Resource, number>>();
  if (hostIds.length === 0) return usage;
  const weight = (column: string) =>
    sql<number>`sum(case when status = 'paused' then ${sql.ref(column)} * ${pausedWeight}::float8 else ${sql.ref(column)} end)`;
  const rows = await db
    .selectFrom('sandboxes')
    .select([
      'host_id',
      weight('vcpus').as('cpu'),
      weight('memory_mb').as('memory'),
      sql<number>`sum(disk_mb)`.as('disk'),
    ])
    .where('host_id', 'in', hostIds)
    .where('status', 'in', ['pending', 'running', 'paused'])
    .groupBy('host_id')
    .execute();
  for (const r of rows)
    if (r.host_id)
      usage.set(r.host_id, { cpu: Number(r.cpu), memory: Number(r.memory), disk: Number(r.disk) });
  return usage;
}

function needOf(need: SandboxNeed, resource: Resource): number {
  switch (resource) {
    case 'cpu':
      return need.vcpus;
    case 'memory':
      return need.memoryMb;
    case 'disk':
      return need.diskMb;
  }
}

const unavailable = (message: string) => new ApiError(503, 'unavailable', message);
