import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Logger } from '@wrenn/core';
import type { Db } from '../db/database.js';
import { conflict, notFound } from '../http/errors.js';
import { deleteTemplateEverywhere } from './fleet/artifacts.js';
import { agentOfSandbox, type Hosts } from './fleet/host-agents.js';
import { statusFromAgent } from './reconciler.js';
import { releasing } from './sandbox-release.js';

/**
 * A team's snapshot lives on the agent under a name derived from its UUID, so snapshot names only
 * need to be unique within a team, and no team can name (or guess) another team's template.
 */
const SNAPSHOT_PREFIX = 'snap-';

export const agentSnapshotName = (templateId: string) => `${SNAPSHOT_PREFIX}${templateId}`;

export const isAgentSnapshotName = (name: string) => name.startsWith(SNAPSHOT_PREFIX);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface ResolvedTemplate {
  /** What the agent knows the template as. */
  agentName: string;
  /** What the team called it (shown in the sandbox's `template`). */
  name: string;
  /** A team snapshot: its id, the sizes it fixes, and the hosts that hold its files. */
  snapshot?: { id: string; vcpus: number; memoryMb: number; diskMb: number; hostIds: string[] };
}

/**
 * A `template` given by a team: one of its snapshots (by name or id) or a platform template (an
 * agent image such as `base`). Other teams' snapshots are indistinguishable from missing ones.
 */
export async function resolveTemplate(db: Db, teamId: string, ref: string): Promise<ResolvedTemplate> {
  const own = await db
    .selectFrom('templates')
    .select(['id', 'name', 'vcpus', 'memory_mb', 'disk_mb'])
    .select((eb) =>
      eb
        .selectFrom('template_replicas')
        .select(sql<string[]>`coalesce(array_agg(host_id::text), '{}')`.as('hosts'))
        .whereRef('template_replicas.template_id', '=', 'templates.id')
        .as('host_ids'),
    )
    .where('team_id', '=', teamId)
    .where((eb) =>
      UUID.test(ref) ? eb.or([eb('name', '=', ref), eb('id', '=', ref)]) : eb('name', '=', ref),
    )
    .executeTakeFirst();
  if (own)
    return {
      agentName: agentSnapshotName(own.id),
      name: own.name,
      snapshot: {
        id: own.id,
        vcpus: own.vcpus,
        memoryMb: own.memory_mb,
        diskMb: own.disk_mb,
        hostIds: own.host_ids ?? [],
      },
    };
  if (isAgentSnapshotName(ref) || UUID.test(ref)) throw notFound('template', ref);
  return { agentName: ref, name: ref };
}

/**
 * Snapshots one of the team's sandboxes (running: paused for the copy and resumed) into a team
 * template. Names are unique per team; the agent knows the template by its UUID.
 */
export async function createTeamSnapshot(
  deps: { db: Db; hosts: Hosts; sandboxReleased?: (sandboxId: string) => void },
  teamId: string,
  sandboxId: string,
  name: string,
  signal?: AbortSignal,
) {
  const { db } = deps;
  const sandbox = await db
    .selectFrom('sandboxes')
    .select('id')
    .where('id', '=', sandboxId)
    .where('team_id', '=', teamId)
    .where('status', 'in', ['running', 'paused'])
    .executeTakeFirst();
  if (!sandbox) throw notFound('sandbox', sandboxId);
  const nameTaken = () => conflict(`name: the team already has a template named ${JSON.stringify(name)}`);
  const taken = await db
    .selectFrom('templates')
    .select('id')
    .where('team_id', '=', teamId)
    .where('name', '=', name)
    .executeTakeFirst();
  if (taken) throw nameTaken();

  const agent = await agentOfSandbox(deps, sandboxId);
  const id = randomUUID();
  // The source is paused for the copy and resumed: a new incarnation for the proxy.
  const { template } = await releasing(deps, sandboxId, () =>
    agent.createSnapshot({ sandboxId, name: agentSnapshotName(id) }, { signal }),
  );
  // The source was paused for the copy and resumed; a reconciler pass in between may have
  // recorded the pause, so record how it is now.
  const { sandbox: source } = await agent.getSandbox({ sandboxId });
  await db
    .updateTable('sandboxes')
    .set({ status: statusFromAgent(source!.status), updated_at: new Date() })
    .where('id', '=', sandboxId)
    .execute();
  const { host_id: hostId } = await db
    .selectFrom('sandboxes')
    .select('host_id')
    .where('id', '=', sandboxId)
    .executeTakeFirstOrThrow();
  try {
    return await db.transaction().execute(async (tx) => {
      const row = await tx
        .insertInto('templates')
        .values({
          id,
          team_id: teamId,
          name,
          kind: 'snapshot',
          source_sandbox_id: sandboxId,
          vcpus: template!.vcpus,
          memory_mb: template!.memoryMb,
          disk_mb: template!.diskMb,
          size_bytes: template!.sizeBytes,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      if (hostId)
        await tx.insertInto('template_replicas').values({ template_id: id, host_id: hostId }).execute();
      return row;
    });
  } catch (err) {
    // A concurrent create took the name: its files must not outlive the refused row.
    await agent.deleteSnapshot({ name: agentSnapshotName(id) }).catch(() => undefined);
    if (/unique|duplicate/i.test(String(err))) throw nameTaken();
    throw err;
  }
}

/** One of the team's snapshots; another team's is indistinguishable from a missing one. */
export async function teamSnapshot(db: Db, teamId: string, id: string, what = 'snapshot') {
  const row = UUID.test(id)
    ? await db
        .selectFrom('templates')
        .selectAll()
        .where('id', '=', id)
        .where('team_id', '=', teamId)
        .where('kind', '=', 'snapshot')
        .executeTakeFirst()
    : undefined;
  if (!row) throw notFound(what, id);
  return row;
}

/** The team's snapshots, oldest first; optionally only those of one sandbox or with one name. */
export async function listTeamSnapshots(
  db: Db,
  teamId: string,
  filter: { sourceSandboxId?: string; name?: string } = {},
) {
  let query = db
    .selectFrom('templates')
    .selectAll()
    .where('team_id', '=', teamId)
    .where('kind', '=', 'snapshot');
  if (filter.sourceSandboxId) query = query.where('source_sandbox_id', '=', filter.sourceSandboxId);
  if (filter.name) query = query.where('name', '=', filter.name);
  return query.orderBy('created_at').orderBy('id').execute();
}

/** The names and ids of every template the team made, by name. */
export async function listTeamTemplates(db: Db, teamId: string) {
  return db
    .selectFrom('templates')
    .select(['id', 'name'])
    .where('team_id', '=', teamId)
    .orderBy('name')
    .execute();
}

/**
 * Deletes a team snapshot's files on every host that holds them (hosts that are down get it when
 * they report in) and its row (sandboxes made from it do not need it).
 */
export async function deleteTeamSnapshot(
  deps: { db: Db; hosts: Hosts; logger?: Logger },
  templateId: string,
): Promise<void> {
  await deleteTemplateEverywhere(deps, { id: templateId, agentName: agentSnapshotName(templateId) });
  await deps.db.deleteFrom('templates').where('id', '=', templateId).execute();
}
