import { sql } from 'kysely';
import type { Logger } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import type { Fleet } from './fleet.js';

/** What `wrenn up` needs before it starts the agent it runs in its own process. */
export interface LocalHostPlan {
  /** The host that agent is, or registers as. */
  hostId: string;
  /** The agent has no credentials yet: its one-time registration token for `hostId`. */
  registrationToken?: string;
  /**
   * The agent's stored credentials name a host this control plane does not have (its database was
   * replaced, or the host was deleted): they must be set aside before it registers anew.
   */
  staleCredentials: boolean;
}

interface Deps {
  db: Db;
  fleet: Fleet;
  logger: Logger;
}

/**
 * The platform host of the agent `wrenn up` runs beside this server (docs/fleet.md "`wrenn up`'s
 * own host"). Registered already (`registeredHostId`, from the agent's credentials): its address is
 * brought up to date (the port may differ from the last start) and no token is needed. Otherwise a
 * registration token for the cluster's static host when there is one, so an install from before
 * keeps its host id and the sandboxes on it (the row stops being static when the agent registers),
 * else for a new platform host. Either way the proxy reaches that host's slot addresses directly:
 * the agent runs in this process, so they are routable from here.
 */
export async function prepareLocalHost(
  deps: Deps,
  opts: { registeredHostId?: string; address: string },
): Promise<LocalHostPlan> {
  const { db, fleet, logger } = deps;
  let staleCredentials = false;
  if (opts.registeredHostId) {
    const known = await db
      .selectFrom('hosts')
      .select(['address', 'is_static'])
      .where('id', '=', opts.registeredHostId)
      .where('status', 'in', ['online', 'unreachable'])
      .executeTakeFirst();
    if (known && !known.is_static) {
      const hostId = opts.registeredHostId;
      await db
        .updateTable('hosts')
        // Its agent starts now, in this process: the stale clock starts here, not at the last
        // heartbeat before the previous stop (else the monitor could mark its paused sandboxes
        // missing in the seconds before the first heartbeat).
        .set({ address: opts.address, last_heartbeat_at: sql<Date>`now()` })
        .where('id', '=', hostId)
        .execute();
      if (known.address !== opts.address) fleet.directory.drop(hostId);
      fleet.directory.localHostId = hostId;
      return { hostId, staleCredentials };
    }
    staleCredentials = true;
    logger.warn(
      { hostId: opts.registeredHostId },
      "the agent's credentials name a host this control plane does not have: registering it anew",
    );
  }
  const hostId = await db.transaction().execute(async (tx) => {
    const existing = await tx
      .selectFrom('hosts')
      .select('id')
      .where('is_static', '=', true)
      .where('status', '!=', 'deleted')
      .executeTakeFirst();
    const id =
      existing?.id ??
      (
        await tx
          .insertInto('hosts')
          .values({ kind: 'platform', status: 'pending' })
          .returning('id')
          .executeTakeFirstOrThrow()
      ).id;
    // Rows from before the fleet named no host: they were this machine's.
    await tx.updateTable('sandboxes').set({ host_id: id }).where('host_id', 'is', null).execute();
    return id;
  });
  const registrationToken = await fleet.credentials.newRegistrationToken(hostId);
  fleet.directory.localHostId = hostId;
  return { hostId, registrationToken, staleCredentials };
}

/**
 * The agent of a `prepareLocalHost` did not start. A host that never registered goes (a new one is
 * deleted, the static host stays as it was) and its unused token stops working; a host that did
 * register keeps its credentials for the next start.
 */
export async function abandonLocalHost(deps: Deps, hostId: string): Promise<void> {
  const { db, fleet } = deps;
  const row = await db
    .selectFrom('hosts')
    .select(['status', 'is_static'])
    .where('id', '=', hostId)
    .executeTakeFirst();
  if (!row || (row.status !== 'pending' && !row.is_static)) return;
  if (row.status === 'pending')
    await db.updateTable('hosts').set({ status: 'deleted' }).where('id', '=', hostId).execute();
  await fleet.credentials.revokeHost(hostId);
  if (fleet.directory.localHostId === hostId) fleet.directory.localHostId = undefined;
}
