import { errorMessage } from '@wrenn/core';
import type { ServerDeps } from '../http/app-types.js';
import { deleteHost } from './fleet/host-admin.js';
import { destroySandbox } from './sandbox-lifecycle.js';
import { deleteTeamSnapshot } from './templates.js';

/**
 * Deletes a team and everything of it on every host: its sandboxes are destroyed where they run,
 * its templates' files removed from every host that holds them (hosts that are down get the delete
 * when they report in), its own (BYOC) hosts deleted, then its rows. A sandbox on a host that cannot
 * be reached now is destroyed by that host's next heartbeat, as one the control plane does not know.
 * The caller has checked that `userId` may (an owner of the team, or an admin).
 */
export async function deleteTeam(deps: ServerDeps, userId: string, teamId: string): Promise<void> {
  const { db, logger } = deps;
  const sandboxes = await db
    .selectFrom('sandboxes')
    .select('id')
    .where('team_id', '=', teamId)
    .where('status', '!=', 'stopped')
    .execute();
  const unreached: string[] = [];
  await Promise.all(
    sandboxes.map(({ id }) =>
      destroySandbox(deps, id).catch((err: unknown) => {
        unreached.push(id);
        logger.warn({ sandboxId: id, err: errorMessage(err) }, 'team deletion: sandbox left to its host');
      }),
    ),
  );
  const templates = await db.selectFrom('templates').select('id').where('team_id', '=', teamId).execute();
  for (const { id } of templates) await deleteTeamSnapshot(deps, id);
  const hosts = await db
    .selectFrom('hosts')
    .select('id')
    .where('team_id', '=', teamId)
    .where('status', '!=', 'deleted')
    .execute();
  for (const { id } of hosts) await deleteHost(deps, userId, id, true);
  await db.transaction().execute(async (tx) => {
    await tx.deleteFrom('sandboxes').where('team_id', '=', teamId).execute();
    await tx.deleteFrom('teams').where('id', '=', teamId).execute();
  });
  logger.info(
    { teamId, sandboxes: sandboxes.length, templates: templates.length, hosts: hosts.length, unreached },
    'team deleted',
  );
}
