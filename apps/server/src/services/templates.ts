import { randomUUID } from 'node:crypto';
import { Code, ConnectError } from '@wrenn/core';
import type { Db } from '../db/database.js';
import { conflict, notFound } from '../http/errors.js';
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
  /** A team snapshot: the sizes it fixes, and the host that holds its files. */
  snapshot?: { vcpus: number; memoryMb: number; diskMb: number; hostId: string | null };
}

/**
 * A `template` given by a team: one of its snapshots (by name or id) or a platform template (an
 * agent image such as `base`). Other teams' snapshots are indistinguishable from missing ones.
 */
export async function resolveTemplate(db: Db, teamId: string, ref: string): Promise<ResolvedTemplate> {
  const own = await db
    .selectFrom('templates')
    .leftJoin('sandboxes', 'sandboxes.id', 'templates.source_sandbox_id')
    .select([
      'templates.id',
      'templates.name',
      'templates.vcpus',
      'templates.memory_mb',
      'templates.disk_mb',
      'sandboxes.host_id',
    ])
    .where('templates.team_id', '=', teamId)
    .where((eb) =>
      UUID.test(ref)
        ? eb.or([eb('templates.name', '=', ref), eb('templates.id', '=', ref)])
        : eb('templates.name', '=', ref),
    )
    .executeTakeFirst();
  if (own)
    return {
      agentName: agentSnapshotName(own.id),
      name: own.name,
      snapshot: { vcpus: own.vcpus, memoryMb: own.memory_mb, diskMb: own.disk_mb, hostId: own.host_id },
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
  try {
    return await db
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

/** Deletes a team snapshot's files and row (sandboxes made from it do not need it). */
export async function deleteTeamSnapshot(deps: { db: Db; hosts: Hosts }, templateId: string): Promise<void> {
  const { db } = deps;
  const source = await db
    .selectFrom('templates')
    .leftJoin('sandboxes', 'sandboxes.id', 'templates.source_sandbox_id')
    .select('sandboxes.host_id')
    .where('templates.id', '=', templateId)
    .executeTakeFirst();
  const agent = await deps.hosts.agent(source?.host_id ?? null);
  await agent.deleteSnapshot({ name: agentSnapshotName(templateId) }).catch((err: unknown) => {
    // Files already gone (another host, a wiped data dir): the row still goes.
    if (ConnectError.from(err).code !== Code.NotFound) throw err;
  });
  await db.deleteFrom('templates').where('id', '=', templateId).execute();
}
