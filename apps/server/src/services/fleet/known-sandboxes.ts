import type { Db } from '../../db/database.js';

/**
 * The sandboxes the control plane expects on host `hostId` (any state but stopped): those placed
 * there, moving there, or kept there as a paused copy; on the static host also the rows from before
 * the fleet (no host). A sandbox a host holds that is not among them is unknown — rows are written
 * before a create reaches an agent, so it is never a create in flight — and is destroyed there.
 */
export function sandboxesKnownOn(db: Db, hostId: string, opts: { isStaticHost?: boolean } = {}) {
  return db
    .selectFrom('sandboxes')
    .select(['id', 'status', 'host_id', 'moving_to'])
    .where((eb) =>
      eb.or([
        eb('host_id', '=', hostId),
        eb('moving_to', '=', hostId),
        eb('replica_host_id', '=', hostId),
        ...(opts.isStaticHost ? [eb('host_id', 'is', null)] : []),
      ]),
    )
    .where('status', '!=', 'stopped')
    .execute();
}
