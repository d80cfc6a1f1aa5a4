import { Code, ConnectError, errorMessage, type Logger } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import type { AgentClient } from '../../http/app-types.js';
import { releasing } from '../sandbox-release.js';

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

/**
 * Destroys on host `hostId` the sandboxes it holds that nobody knows (`sandboxesKnownOn`), all at
 * once; one that fails is logged and met again on the next pass. One already gone is what was
 * wanted: the host's list was read before a destroy (its owner's, say) that ended before the rows.
 */
export async function destroyUnknownSandboxes(
  deps: { logger: Logger; sandboxReleased?: (sandboxId: string) => void },
  agent: Pick<AgentClient, 'destroySandbox'>,
  hostId: string,
  ids: readonly string[],
): Promise<void> {
  await Promise.all(
    ids.map((sandboxId) =>
      releasing(deps, sandboxId, () => agent.destroySandbox({ sandboxId }, { timeoutMs: 30_000 })).then(
        () => deps.logger.info({ hostId, sandboxId }, 'destroyed a sandbox the control plane does not know'),
        (err: unknown) => {
          if (ConnectError.from(err).code === Code.NotFound) return;
          deps.logger.warn(
            { hostId, sandboxId, err: errorMessage(err) },
            'could not destroy an unknown sandbox',
          );
        },
      ),
    ),
  );
}
