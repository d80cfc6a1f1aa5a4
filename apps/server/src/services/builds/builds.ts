import { UUID_PATTERN } from '@wrenn/core';
import type { Db } from '../../db/database.js';
import type { BuildStatus, TemplateBuildsTable } from '../../db/schema.js';
import type { Selectable } from 'kysely';
import { ApiError, conflict, notFound } from '../../http/errors.js';
import { deleteTemplateEverywhere, type ArtifactDeps } from '../fleet/artifacts.js';
import { agentTemplateName } from '../templates.js';
import type { BuildSpec } from './spec.js';

/** Builds are queued by id; the queue (`queue.ts`) runs them. */
export interface BuildQueue {
  enqueue(buildId: string): Promise<void>;
  /** Asks the worker running the build, if any, to stop it now (builds are also polled). */
  cancelRunning(buildId: string): void;
}

export interface BuildServiceDeps extends ArtifactDeps {
  queue: BuildQueue;
}

export type BuildRow = Selectable<TemplateBuildsTable>;

/** Who asks: a team (its own templates) or an administrator (platform templates, `teamId` null). */
export interface BuildOwner {
  teamId: string | null;
  userId?: string;
}

export interface BuildRequest {
  /** The template the build makes; created (with no ready build) when the owner has none by it. */
  templateName: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  tags?: string[];
}

export interface BuildStart {
  spec: BuildSpec;
  kind: 'snapshot' | 'image';
  skipCache?: boolean;
}

const FINISHED: BuildStatus[] = ['ready', 'error', 'cancelled'];
export const isFinished = (status: BuildStatus) => FINISHED.includes(status);

/** The owner's template by name, made when it has none; a snapshot of that name is a conflict. */
async function templateFor(db: Db, owner: BuildOwner, req: BuildRequest) {
  const { teamId } = owner;
  const find = () =>
    db
      .selectFrom('templates')
      .select(['id', 'origin'])
      .where((eb) => (teamId === null ? eb('team_id', 'is', null) : eb('team_id', '=', teamId)))
      .where('name', '=', req.templateName)
      .where('origin', '!=', 'artifact')
      .executeTakeFirst();
  const found = await find();
  if (found) {
    if (found.origin !== 'template')
      throw conflict(`name: ${JSON.stringify(req.templateName)} is a snapshot, not a built template`);
    return found.id;
  }
  const made = await db
    .insertInto('templates')
    .values({
      team_id: teamId,
      name: req.templateName,
      kind: 'snapshot',
      origin: 'template',
      source_sandbox_id: null,
      vcpus: req.vcpus,
      memory_mb: req.memoryMb,
      disk_mb: req.diskMb,
      size_bytes: 0,
    })
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst();
  if (made) return made.id;
  const raced = await find();
  if (!raced) throw conflict(`name: ${JSON.stringify(req.templateName)} was taken meanwhile`);
  return raced.id;
}

/**
 * Records a build, not yet queued (E2B's SDK asks for a build id first, uploads its files, then
 * starts it with `startBuild`).
 */
export async function requestBuild(db: Db, owner: BuildOwner, req: BuildRequest) {
  const templateId = await templateFor(db, owner, req);
  return db
    .insertInto('template_builds')
    .values({
      template_id: templateId,
      team_id: owner.teamId,
      status: 'waiting',
      kind: 'snapshot',
      spec: 'null',
      vcpus: req.vcpus,
      memory_mb: req.memoryMb,
      disk_mb: req.diskMb,
      tags: req.tags ?? [],
      created_by: owner.userId ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Gives a requested build its steps and queues it. */
export async function startBuild(deps: BuildServiceDeps, build: BuildRow, start: BuildStart) {
  if (build.spec !== null || build.status !== 'waiting')
    throw conflict(`build ${build.id} was already started (it is ${build.status})`);
  const row = await deps.db
    .updateTable('template_builds')
    .set({
      spec: JSON.stringify(start.spec),
      kind: start.kind,
      skip_cache: start.skipCache ?? false,
      step_count: start.spec.steps.length,
    })
    .where('id', '=', build.id)
    .where('status', '=', 'waiting')
    .returningAll()
    .executeTakeFirst();
  if (!row) throw conflict(`build ${build.id} was cancelled or started meanwhile`);
  await appendLog(deps.db, build.id, 'info', undefined, 'queued');
  await deps.queue.enqueue(build.id);
  return row;
}

/** `/v1`: request and start in one. */
export async function createBuild(
  deps: BuildServiceDeps,
  owner: BuildOwner,
  req: BuildRequest,
  start: BuildStart,
) {
  const build = await requestBuild(deps.db, owner, req);
  return startBuild(deps, build, start);
}

/** One of the owner's builds; another team's is indistinguishable from a missing one. */
export async function ownedBuild(db: Db, owner: BuildOwner, buildId: string, templateId?: string) {
  const { teamId } = owner;
  let query = db
    .selectFrom('template_builds')
    .selectAll()
    .where('id', '=', buildId)
    .where((eb) => (teamId === null ? eb('team_id', 'is', null) : eb('team_id', '=', teamId)));
  if (templateId) query = query.where('template_id', '=', templateId);
  const row = UUID_PATTERN.test(buildId) ? await query.executeTakeFirst() : undefined;
  if (!row) throw notFound('build', buildId);
  return row;
}

export async function listBuilds(
  db: Db,
  owner: BuildOwner,
  filter: { templateId?: string; limit?: number } = {},
) {
  const { teamId } = owner;
  let query = db
    .selectFrom('template_builds')
    .innerJoin('templates', 'templates.id', 'template_builds.template_id')
    .selectAll('template_builds')
    .select('templates.name as template_name')
    .where((eb) =>
      teamId === null
        ? eb('template_builds.team_id', 'is', null)
        : eb('template_builds.team_id', '=', teamId),
    );
  if (filter.templateId) query = query.where('template_builds.template_id', '=', filter.templateId);
  return query
    .orderBy('template_builds.created_at', 'desc')
    .orderBy('template_builds.id', 'desc')
    .limit(filter.limit ?? 100)
    .execute();
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];

export async function appendLog(
  db: Db,
  buildId: string,
  level: LogLevel,
  step: string | undefined,
  message: string,
): Promise<void> {
  await appendLogs(db, buildId, [{ at: new Date(), level, step, message }]);
}

export interface LogLine {
  at: Date;
  level: LogLevel;
  step: string | undefined;
  message: string;
}

export async function appendLogs(db: Db, buildId: string, lines: LogLine[]): Promise<void> {
  if (lines.length === 0) return;
  await db
    .insertInto('template_build_logs')
    .values(
      lines.map((l) => ({
        build_id: buildId,
        at: l.at,
        level: l.level,
        step: l.step ?? null,
        message: l.message,
      })),
    )
    .execute();
}

/** The build's log lines from `offset` (a count of lines at `minLevel` and above already read). */
export async function buildLogs(
  db: Db,
  buildId: string,
  opts: { offset?: number; limit?: number; minLevel?: LogLevel } = {},
) {
  const levels = LEVELS.slice(LEVELS.indexOf(opts.minLevel ?? 'debug'));
  return db
    .selectFrom('template_build_logs')
    .select(['at', 'level', 'step', 'message'])
    .where('build_id', '=', buildId)
    .where('level', 'in', levels)
    .orderBy('seq')
    .offset(opts.offset ?? 0)
    .limit(opts.limit ?? 1000)
    .execute();
}

/**
 * Cancels a build: one still waiting ends at once; a running one is stopped by its worker (at
 * once in this process, within a second in another) and its sandbox destroyed.
 */
export async function cancelBuild(deps: BuildServiceDeps, build: BuildRow): Promise<BuildRow> {
  if (isFinished(build.status))
    throw new ApiError(409, 'failed_precondition', `build ${build.id} already ended (${build.status})`);
  const waiting = await deps.db
    .updateTable('template_builds')
    .set({ status: 'cancelled', finished_at: new Date(), spec: stripSecrets(build.spec) })
    .where('id', '=', build.id)
    .where('status', '=', 'waiting')
    .returningAll()
    .executeTakeFirst();
  if (waiting) {
    await appendLog(deps.db, build.id, 'warn', undefined, 'cancelled before it started');
    return waiting;
  }
  const row = await deps.db
    .updateTable('template_builds')
    .set({ cancel_requested: true })
    .where('id', '=', build.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  deps.queue.cancelRunning(build.id);
  return row;
}

/** A spec without registry credentials (kept only while the build may still need them). */
export function stripSecrets(spec: unknown): string {
  const s = spec as BuildSpec | null;
  if (s && 'image' in s.from && s.from.credentials)
    return JSON.stringify({ ...s, from: { image: s.from.image } });
  return JSON.stringify(s);
}

/**
 * Deletes a built template: its builds are cancelled, the files of every artifact it made are
 * deleted on every host (hosts down get it when they return), then its rows. Sandboxes already
 * started from it keep running.
 */
export async function deleteBuiltTemplate(deps: BuildServiceDeps, templateId: string): Promise<void> {
  const { db } = deps;
  const running = await db
    .selectFrom('template_builds')
    .selectAll()
    .where('template_id', '=', templateId)
    .where('status', 'in', ['waiting', 'building'])
    .execute();
  for (const build of running) await cancelBuild(deps, build).catch(() => undefined);
  const artifacts = await db
    .selectFrom('template_builds')
    .innerJoin('templates', 'templates.id', 'template_builds.artifact_id')
    .select(['templates.id', 'templates.kind'])
    .where('template_builds.template_id', '=', templateId)
    .execute();
  for (const artifact of artifacts) {
    await deleteTemplateEverywhere(deps, { id: artifact.id, agentName: agentTemplateName(artifact) });
    await db.deleteFrom('templates').where('id', '=', artifact.id).execute();
  }
  await db.deleteFrom('templates').where('id', '=', templateId).execute();
}

/** A build as both APIs show it (E2B's view maps it further). */
export function buildView(row: BuildRow & { template_name?: string }) {
  const spec = row.spec as BuildSpec | null;
  return {
    id: row.id,
    template_id: row.template_id,
    template: row.template_name,
    status: row.status,
    kind: row.kind,
    vcpus: row.vcpus,
    memory_mb: row.memory_mb,
    disk_mb: row.disk_mb,
    tags: row.tags,
    skip_cache: row.skip_cache,
    progress: {
      steps: row.step_count,
      done: row.steps_done,
      cached: row.cached_steps,
      current: row.current_step,
    },
    reason: row.reason,
    host_id: row.host_id,
    from: spec
      ? 'template' in spec.from
        ? { template: spec.from.template }
        : { image: spec.from.image }
      : null,
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: row.finished_at?.toISOString() ?? null,
  };
}

/**
 * Deletes an artifact's files everywhere and its row, unless something still uses it: a template
 * (as its current files), a tagged build, or the cache (a fully cached build's output is its layer).
 */
export async function dropArtifactIfUnused(deps: ArtifactDeps, artifactId: string): Promise<void> {
  const { db } = deps;
  const used = await db
    .selectNoFrom((eb) => [
      eb.exists(eb.selectFrom('templates').select('id').where('artifact_id', '=', artifactId)).as('current'),
      eb
        .exists(eb.selectFrom('templates').select('id').where('base_artifact_id', '=', artifactId))
        .as('below'),
      eb
        .exists(eb.selectFrom('build_cache').select('key').where('artifact_id', '=', artifactId))
        .as('cached'),
      eb
        .exists(
          eb
            .selectFrom('template_tags')
            .innerJoin('template_builds', 'template_builds.id', 'template_tags.build_id')
            .select('template_tags.tag')
            .where('template_builds.artifact_id', '=', artifactId),
        )
        .as('tagged'),
    ])
    .executeTakeFirstOrThrow();
  if (used.current || used.below || used.cached || used.tagged) return;
  const row = await db
    .selectFrom('templates')
    .select(['id', 'kind'])
    .where('id', '=', artifactId)
    .executeTakeFirst();
  if (!row) return;
  await deleteTemplateEverywhere(deps, { id: row.id, agentName: agentTemplateName(row) }).catch(
    () => undefined,
  );
  await db.deleteFrom('templates').where('id', '=', artifactId).execute();
}
