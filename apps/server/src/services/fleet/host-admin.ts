import type { Logger } from '@wrenn/core';
import { errorMessage } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import { ApiError, badRequest, forbidden, notFound } from '../../http/errors.js';
import type { Fleet } from './fleet.js';
import type { Hosts } from './host-agents.js';

interface Deps {
  db: Db;
  hosts: Hosts;
  fleet: Fleet;
  logger: Logger;
  sandboxReleased?: (sandboxId: string) => void;
}

/** Sandboxes that keep a host from being deleted without `force`. */
const ON_HOST = ['pending', 'running', 'paused', 'missing'] as const;

/**
 * A new pending host and its registration token. Administrators add platform hosts, or a host of
 * any BYOC team; a team's owners add hosts of their BYOC team (without `teamId`: their one BYOC team).
 */
export async function newHost(deps: Deps, userId: string, teamId?: string) {
  const { db } = deps;
  const isAdmin = (
    await db.selectFrom('users').select('is_admin').where('id', '=', userId).executeTakeFirst()
  )?.is_admin;
  let team: string | null = null;
  if (teamId) {
    const row = await db
      .selectFrom('teams')
      .leftJoin('team_members', (j) =>
        j.onRef('team_members.team_id', '=', 'teams.id').on('team_members.user_id', '=', userId),
      )
      .select(['teams.is_byoc', 'team_members.role'])
      .where('teams.id', '=', teamId)
      .executeTakeFirst();
    if (!row || (!row.role && !isAdmin)) throw notFound('team', teamId);
    if (row.role !== 'owner' && !isAdmin) throw forbidden("only the team's owners add its hosts");
    if (!row.is_byoc)
      throw new ApiError(
        409,
        'failed_precondition',
        'team_id: the team is not BYOC (PUT /v1/admin/teams/{id}/byoc)',
      );
    team = teamId;
  } else if (!isAdmin) {
    const owned = await db
      .selectFrom('teams')
      .innerJoin('team_members', 'team_members.team_id', 'teams.id')
      .select('teams.id')
      .where('team_members.user_id', '=', userId)
      .where('team_members.role', '=', 'owner')
      .where('teams.is_byoc', '=', true)
      .execute();
    if (owned.length === 0)
      throw forbidden('only administrators add platform hosts; owners of a BYOC team add hosts of that team');
    if (owned.length > 1) throw badRequest('team_id', 'required: you own several BYOC teams');
    team = owned[0]!.id;
  }
  const host = await db
    .insertInto('hosts')
    .values({ kind: team ? 'byoc' : 'platform', team_id: team, status: 'pending' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const token = await deps.fleet.credentials.newRegistrationToken(host.id);
  const [row] = await hostsVisibleTo(db, { all: true, id: host.id });
  return { host: row!, token };
}

export type HostRow = Awaited<ReturnType<typeof hostsVisibleTo>>[number];

/**
 * Hosts with their team's name and the number of sandboxes placed on them: every host (`all`,
 * deleted ones only when asked), or those of the BYOC teams `userId` belongs to.
 */
export async function hostsVisibleTo(
  db: Db,
  who: { all: true; deleted?: boolean; id?: string } | { userId: string; teamId?: string },
) {
  let query = db
    .selectFrom('hosts')
    .leftJoin('teams', 'teams.id', 'hosts.team_id')
    .selectAll('hosts')
    .select((eb) => [
      'teams.name as team_name',
      eb
        .selectFrom('sandboxes')
        .select(eb.fn.countAll<string>().as('n'))
        .whereRef('sandboxes.host_id', '=', 'hosts.id')
        .where('sandboxes.status', '!=', 'stopped')
        .as('sandbox_count'),
    ]);
  if ('all' in who) {
    if (!who.deleted) query = query.where('hosts.status', '!=', 'deleted');
    if (who.id) query = query.where('hosts.id', '=', who.id);
  } else {
    query = query
      .where('hosts.status', '!=', 'deleted')
      .where('hosts.kind', '=', 'byoc')
      .where((eb) =>
        eb(
          'hosts.team_id',
          'in',
          eb.selectFrom('team_members').select('team_id').where('user_id', '=', who.userId),
        ),
      );
    if (who.teamId) query = query.where('hosts.team_id', '=', who.teamId);
  }
  return query.orderBy('hosts.created_at').orderBy('hosts.id').execute();
}

/**
 * Deletes a host: refused (the sandboxes on it returned) while it has any, unless `force`, which
 * destroys them (best effort: the host may be gone) and marks them stopped. Then its tokens are
 * revoked and its connections dropped.
 */
export async function deleteHost(
  deps: Deps,
  userId: string,
  hostId: string,
  force: boolean,
): Promise<{ inUse?: string[] }> {
  const { db, fleet, logger } = deps;
  const host = await db
    .selectFrom('hosts')
    .leftJoin('team_members', (j) =>
      j.onRef('team_members.team_id', '=', 'hosts.team_id').on('team_members.user_id', '=', userId),
    )
    .select(['hosts.is_static', 'team_members.role'])
    .where('hosts.id', '=', hostId)
    .where('hosts.status', '!=', 'deleted')
    .executeTakeFirst();
  const isAdmin = (
    await db.selectFrom('users').select('is_admin').where('id', '=', userId).executeTakeFirst()
  )?.is_admin;
  if (!host || (!host.role && !isAdmin)) throw notFound('host', hostId);
  if (host.role !== 'owner' && !isAdmin) throw forbidden("only the team's owners delete its hosts");
  if (host.is_static)
    throw new ApiError(
      409,
      'failed_precondition',
      'the static host is configured (WRENN_AGENT_URL), not registered',
    );
  const sandboxes = await db
    .selectFrom('sandboxes')
    .select('id')
    .where('host_id', '=', hostId)
    .where('status', 'in', ON_HOST)
    .orderBy('id')
    .execute();
  const ids = sandboxes.map((s) => s.id);
  if (ids.length > 0 && !force) return { inUse: ids };
  if (ids.length > 0) {
    const agent = await deps.hosts.agent(hostId).catch(() => undefined);
    await Promise.all(
      ids.map(async (sandboxId) => {
        try {
          await agent?.destroySandbox({ sandboxId }, { timeoutMs: 10_000 });
        } catch (err) {
          logger.warn(
            { hostId, sandboxId, err: errorMessage(err) },
            'could not destroy a sandbox of a deleted host',
          );
        }
        deps.sandboxReleased?.(sandboxId);
      }),
    );
    await db
      .updateTable('sandboxes')
      .set({ status: 'stopped', status_reason: 'its host was deleted', updated_at: new Date() })
      .where('id', 'in', ids)
      .execute();
  }
  await db.updateTable('hosts').set({ status: 'deleted' }).where('id', '=', hostId).execute();
  await fleet.credentials.revokeHost(hostId);
  fleet.directory.drop(hostId);
  logger.info({ hostId, destroyed: ids.length }, 'host deleted');
  return {};
}
