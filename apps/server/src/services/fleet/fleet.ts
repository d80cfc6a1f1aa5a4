import type { Logger } from '@wrenn/core';
import { FLEET_DEFAULTS, type FleetConfig } from '../../config.js';
import type { Db } from '../../db/database.js';
import { loadClusterKeys } from './cluster-keys.js';
import { HostCredentials, type RefreshHooks } from './host-credentials.js';
import { HostDirectory } from './host-agents.js';

/** The fleet's parts one server holds: its hosts' credentials, their connections, the settings. */
export interface Fleet {
  credentials: HostCredentials;
  directory: HostDirectory;
  config: FleetConfig;
}

/**
 * The cluster's keys (made if this is the first server), this server's client certificate, and
 * the static host (`staticAgentUrl`, WRENN_AGENT_URL) as a platform host row: plain h2c, no
 * registration or heartbeats, never marked unreachable; one per cluster (every replica names the
 * same agent), kept across restarts when its URL changes. Sandbox rows from before the fleet are
 * given to it.
 */
export async function openFleet(
  db: Db,
  logger: Logger,
  opts: { staticAgentUrl?: string; config?: FleetConfig; refreshHooks?: RefreshHooks } = {},
): Promise<Fleet> {
  const config = opts.config ?? FLEET_DEFAULTS;
  const credentials = new HostCredentials(db, await loadClusterKeys(db), opts.refreshHooks);
  await credentials.controlPlaneMaterial();
  const staticHostId = opts.staticAgentUrl ? await staticHost(db, opts.staticAgentUrl) : undefined;
  const directory = new HostDirectory(db, credentials, logger, config.placement, staticHostId);
  return { credentials, directory, config };
}

async function staticHost(db: Db, url: string): Promise<string> {
  const now = new Date();
  const row = await db
    .insertInto('hosts')
    .values({ kind: 'platform', status: 'online', is_static: true, address: url, registered_at: now })
    // One static host per cluster: an agent back on another URL is the same host.
    .onConflict((oc) =>
      oc.column('is_static').where('is_static', '=', true).doUpdateSet({ status: 'online', address: url }),
    )
    .returning('id')
    .executeTakeFirstOrThrow();
  await db.updateTable('sandboxes').set({ host_id: row.id }).where('host_id', 'is', null).execute();
  return row.id;
}
