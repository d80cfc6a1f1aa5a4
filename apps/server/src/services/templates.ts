import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Logger } from '@wrenn/core';
import { UUID_PATTERN } from '@wrenn/core';
import type { ExpressionBuilder } from 'kysely';
import type { Db } from '../db/database.js';
import type { Database, TemplateDefaults } from '../db/schema.js';
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
/** An image artifact a build flattened: the agent knows it by its UUID too. */
const IMAGE_PREFIX = 'img-';

export const agentSnapshotName = (templateId: string) => `${SNAPSHOT_PREFIX}${templateId}`;

/** What the agent knows a template row's files as (snapshots and artifacts). */
export const agentTemplateName = (row: { id: string; kind: 'snapshot' | 'image' }) =>
  row.kind === 'image' ? `${IMAGE_PREFIX}${row.id}` : agentSnapshotName(row.id);

export const isAgentSnapshotName = (name: string) =>
  name.startsWith(SNAPSHOT_PREFIX) || name.startsWith(IMAGE_PREFIX);

/** Files a template row has on hosts: a snapshot, or an artifact of a build. */
export interface TemplateFiles {
  id: string;
  agentName: string;
  hostIds: string[];
}

export interface ResolvedTemplate {
  /** What the agent knows the template as. */
  agentName: string;
  /** What the team called it (shown in the sandbox's `template`). */
  name: string;
  /** A snapshot (a team's, or a built template's): the sizes it fixes and the hosts holding it. */
  snapshot?: { id: string; vcpus: number; memoryMb: number; diskMb: number; hostIds: string[] };
  /** Files a host must hold before a sandbox starts there, in order (an imported image, then this). */
  files?: TemplateFiles[];
  /** Environment variables a build set (ENV steps, the image's Env): every sandbox starts with them. */
  env?: Record<string, string>;
  /** A build's last USER and WORKDIR: what its sandboxes' commands default to. */
  user?: string;
  workdir?: string;
}

type Row = {
  id: string;
  name: string;
  kind: 'snapshot' | 'image';
  origin: 'snapshot' | 'template' | 'artifact';
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  artifact_id: string | null;
  base_artifact_id: string | null;
  defaults: TemplateDefaults | null;
  host_ids: string[] | null;
};

function templateRows(db: Db) {
  return db
    .selectFrom('templates')
    .select([
      'id',
      'name',
      'kind',
      'origin',
      'vcpus',
      'memory_mb',
      'disk_mb',
      'artifact_id',
      'base_artifact_id',
      'defaults',
    ])
    .select((eb) =>
      eb
        .selectFrom('template_replicas')
        .select(sql<string[]>`coalesce(array_agg(host_id::text), '{}')`.as('hosts'))
        .whereRef('template_replicas.template_id', '=', 'templates.id')
        .as('host_ids'),
    );
}

const filesOf = (row: Row): TemplateFiles => ({
  id: row.id,
  agentName: agentTemplateName(row),
  hostIds: row.host_ids ?? [],
});

/** A row with files (a snapshot or an artifact) as what sandboxes start from. */
async function fromFiles(db: Db, row: Row, shownName: string): Promise<ResolvedTemplate> {
  const files: TemplateFiles[] = [];
  if (row.base_artifact_id) {
    const base = await templateRows(db).where('id', '=', row.base_artifact_id).executeTakeFirst();
    if (base) files.push(filesOf(base));
  }
  files.push(filesOf(row));
  const own = filesOf(row);
  return {
    agentName: own.agentName,
    name: shownName,
    files,
    ...(row.defaults?.env && Object.keys(row.defaults.env).length > 0 ? { env: row.defaults.env } : {}),
    ...(row.defaults?.user ? { user: row.defaults.user } : {}),
    ...(row.defaults?.workdir ? { workdir: row.defaults.workdir } : {}),
    snapshot:
      row.kind === 'snapshot'
        ? { id: row.id, vcpus: row.vcpus, memoryMb: row.memory_mb, diskMb: row.disk_mb, hostIds: own.hostIds }
        : undefined,
  };
}

/** An artifact (a build's output or a cache layer) as what a sandbox starts from. */
export async function resolveArtifactRow(db: Db, artifactId: string, shownName: string) {
  const row = await templateRows(db).where('id', '=', artifactId).executeTakeFirst();
  if (!row) throw notFound('template', artifactId);
  return fromFiles(db, row, shownName);
}

/** A built template by tag (`default`: its latest ready build). */
async function builtTemplate(db: Db, row: Row, tag: string | undefined, ref: string) {
  let artifactId = row.artifact_id;
  if (tag && tag !== 'default') {
    const tagged = await db
      .selectFrom('template_tags')
      .innerJoin('template_builds', 'template_builds.id', 'template_tags.build_id')
      .select('template_builds.artifact_id')
      .where('template_tags.template_id', '=', row.id)
      .where('template_tags.tag', '=', tag)
      .executeTakeFirst();
    if (!tagged) throw notFound('template', ref);
    artifactId = tagged.artifact_id;
  }
  if (!artifactId) throw conflict(`template: ${JSON.stringify(ref)} has no ready build yet`);
  const artifact = await templateRows(db).where('id', '=', artifactId).executeTakeFirst();
  if (!artifact) throw conflict(`template: the build ${JSON.stringify(ref)} names is gone`);
  return fromFiles(db, artifact, ref);
}

/**
 * A `template` given by a team: one of its snapshots (by name or id), one of its or the platform's
 * built templates (`name` or `name:tag`, or its id), or a platform image the agents hold (`base`).
 * Other teams' templates are indistinguishable from missing ones.
 */
export async function resolveTemplate(db: Db, teamId: string, ref: string): Promise<ResolvedTemplate> {
  const colon = ref.lastIndexOf(':');
  const name = colon > 0 ? ref.slice(0, colon) : ref;
  const tag = colon > 0 ? ref.slice(colon + 1) : undefined;
  const byName = (eb: ExpressionBuilder<Database, 'templates'>) =>
    UUID_PATTERN.test(name) ? eb.or([eb('name', '=', name), eb('id', '=', name)]) : eb('name', '=', name);
  const own = await templateRows(db)
    .where('team_id', '=', teamId)
    .where('origin', '!=', 'artifact')
    .where(byName)
    .executeTakeFirst();
  if (own?.origin === 'template') return builtTemplate(db, own, tag, ref);
  if (own && !tag) return fromFiles(db, own, own.name);
  const platform = await templateRows(db)
    .where('team_id', 'is', null)
    .where('origin', '=', 'template')
    .where(byName)
    .executeTakeFirst();
  if (platform) return builtTemplate(db, platform, tag, ref);
  if (isAgentSnapshotName(ref) || UUID_PATTERN.test(ref) || tag) throw notFound('template', ref);
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
  const row = UUID_PATTERN.test(id)
    ? await db
        .selectFrom('templates')
        .selectAll()
        .where('id', '=', id)
        .where('team_id', '=', teamId)
        .where('origin', '=', 'snapshot')
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
    .where('origin', '=', 'snapshot');
  if (filter.sourceSandboxId) query = query.where('source_sandbox_id', '=', filter.sourceSandboxId);
  if (filter.name) query = query.where('name', '=', filter.name);
  return query.orderBy('created_at').orderBy('id').execute();
}

/** The names and ids of every template the team made, by name. */
export async function listTeamTemplates(db: Db, teamId: string) {
  return db
    .selectFrom('templates')
    .select(['id', 'name', 'origin', 'kind', 'team_id'])
    .where((eb) =>
      eb.or([
        eb('team_id', '=', teamId),
        // The platform's built templates, once they have a ready build.
        eb.and([eb('team_id', 'is', null), eb('origin', '=', 'template'), eb('artifact_id', 'is not', null)]),
      ]),
    )
    .where('origin', '!=', 'artifact')
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
