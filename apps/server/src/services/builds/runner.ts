import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { errorMessage, type Logger } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { Db } from '../../db/database.js';
import type { AgentClient } from '../../http/app-types.js';
import { createSandbox, destroySandbox, type SandboxLifecycleDeps } from '../sandbox-lifecycle.js';
import {
  agentTemplateName,
  resolveArtifactRow,
  resolveTemplate,
  type ResolvedTemplate,
} from '../templates.js';
import { teamScope, type BuildFiles } from './build-files.js';
import {
  appendLogs,
  dropArtifactIfUnused,
  stripSecrets,
  type BuildRow,
  type LogLevel,
  type LogLine,
} from './builds.js';
import { BUILD_DEFAULTS, MAX_BUILD_ATTEMPTS } from './queue.js';
import {
  applyStateStep,
  describeStep,
  INITIAL_STATE,
  type BuildSpec,
  type BuildState,
  type BuildStep,
} from './spec.js';

export interface BuildRunnerDeps extends SandboxLifecycleDeps {
  files: BuildFiles;
  logger: Logger;
}

export interface BuildRunnerOptions {
  /** A step that ran at least this long is kept as a cache layer (the last step always is). */
  cacheMinStepMs: number;
  /** Cache layers kept per scope (team or platform), newest used first. */
  cacheLayersKept: number;
  /** The longest one RUN step may take. */
  stepTimeoutMs: number;
  /** How long the ready command and the healthcheck may keep failing, when the spec does not say. */
  readyTimeoutSec: number;
  /** The longest a whole build may run (a little under the queue's expiry). */
  timeoutMs: number;
}

export const RUNNER_DEFAULTS: BuildRunnerOptions = {
  cacheMinStepMs: 2000,
  cacheLayersKept: 100,
  stepTimeoutMs: 3600_000,
  readyTimeoutSec: 300,
  timeoutMs: (BUILD_DEFAULTS.timeoutSec - 60) * 1000,
};

/** The runner's time limit for a queue that gives a job up after `timeoutSec`. */
export const runnerTimeoutMs = (timeoutSec: number) => Math.max(30, timeoutSec - 60) * 1000;

/** No team has this id: platform builds resolve only platform templates. */
const NO_TEAM = '00000000-0000-0000-0000-000000000000';
const START_LOG = '/tmp/wrenn-start.log';
/** The sandbox's own user in `base` and in imported images (commands run as it by default). */
const DEFAULT_USER = 'user';
const TAIL_LINES = 20;

class BuildFailed extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly tail: string[] = [],
  ) {
    super(message);
  }
}

/** A build's log: lines are written in batches (a chatty step is not a row per line), with a tail kept. */
class BuildLog {
  private pending: LogLine[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  tail: string[] = [];

  constructor(
    private readonly db: Db,
    private readonly buildId: string,
  ) {
    this.timer = setInterval(() => void this.flush(), 300);
  }

  line(level: LogLevel, step: string | undefined, message: string): void {
    const text = message.length > 4000 ? `${message.slice(0, 4000)}…` : message;
    this.pending.push({ at: new Date(), level, step, message: text });
    this.tail.push(text);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  flush(): Promise<void> {
    const lines = this.pending;
    this.pending = [];
    this.flushing = this.flushing.then(() => appendLogs(this.db, this.buildId, lines)).catch(() => undefined);
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

/** The cache key of the state after each step: everything that made it, chained. */
export function layerKeys(scope: string, base: string, kind: string, steps: BuildStep[]): string[] {
  let key = createHash('sha256').update(JSON.stringify({ scope, base, kind })).digest('hex');
  return steps.map((step) => {
    key = createHash('sha256').update(key).update(JSON.stringify(step)).digest('hex');
    return key;
  });
}

/**
 * Runs one build to its end (ready, error or cancelled): a sandbox from the base (or from the
 * newest cache layer that matches), each step in it, the start command and its ready check, then a
 * snapshot (or a flattened image) that becomes the template's new files. The build's sandbox is
 * destroyed whatever happens. Throws only when the server is stopping (the queue retries it).
 */
export function buildRunner(deps: BuildRunnerDeps, opts: BuildRunnerOptions = RUNNER_DEFAULTS) {
  return async function runBuild(buildId: string, stopping: AbortSignal): Promise<void> {
    const { db } = deps;
    const row = await db
      .selectFrom('template_builds')
      .selectAll()
      .where('id', '=', buildId)
      .executeTakeFirst();
    if (
      !row ||
      row.spec === null ||
      row.status === 'ready' ||
      row.status === 'error' ||
      row.status === 'cancelled'
    )
      return;
    const log = new BuildLog(db, buildId);
    try {
      if (row.attempts > 0) {
        log.line('warn', undefined, `the server running this build stopped (attempt ${row.attempts})`);
        await releaseSandbox(deps, row);
      }
      if (row.cancel_requested) return await finish(db, row, 'cancelled', log, undefined, 'cancelled');
      if (row.attempts >= MAX_BUILD_ATTEMPTS)
        return await finish(db, row, 'error', log, {
          step: 'base',
          message: `interrupted ${row.attempts} times: the server running it stopped`,
          tail: [],
        });
      const claimed = await db
        .updateTable('template_builds')
        .set({ status: 'building', attempts: row.attempts + 1, started_at: row.started_at ?? new Date() })
        .where('id', '=', buildId)
        .where('attempts', '=', row.attempts)
        .where('status', 'in', ['waiting', 'building'])
        .returningAll()
        .executeTakeFirst();
      if (!claimed) return;
      await runClaimed(deps, opts, claimed, log, stopping);
    } finally {
      await log.close();
    }
  };
}

async function runClaimed(
  deps: BuildRunnerDeps,
  opts: BuildRunnerOptions,
  build: BuildRow,
  log: BuildLog,
  stopping: AbortSignal,
): Promise<void> {
  const { db } = deps;
  // Cancelled from any server: seen here within a second.
  const cancel = new AbortController();
  const poll = setInterval(() => {
    void db
      .selectFrom('template_builds')
      .select('cancel_requested')
      .where('id', '=', build.id)
      .executeTakeFirst()
      .then((r) => {
        if (r?.cancel_requested) cancel.abort(new Error('cancelled'));
      })
      .catch(() => undefined);
  }, 1000);
  // Ends before the queue would give the job up as expired (and hand it to another worker).
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = AbortSignal.any([cancel.signal, stopping, deadline]);
  const started = Date.now();
  try {
    const artifact = await execute(deps, opts, build, log, signal);
    await releaseSandbox(deps, build);
    await finish(db, build, 'ready', log, undefined, undefined, artifact);
    deps.logger.info({ buildId: build.id, ms: Date.now() - started }, 'template build ready');
  } catch (err) {
    await releaseSandbox(deps, build);
    const cancelled = cancel.signal.aborted || String(stopping.reason).includes('cancelled');
    if (cancelled) {
      await finish(db, build, 'cancelled', log, undefined, 'cancelled');
      return;
    }
    // The server is going away: the build stays `building`; the queue runs it again.
    if (stopping.aborted) throw err;
    const failure = deadline.aborted
      ? new BuildFailed(
          'finalize',
          `the build took longer than ${Math.round(opts.timeoutMs / 1000)} s (WRENN_BUILD_TIMEOUT_SEC)`,
          log.tail.slice(),
        )
      : err instanceof BuildFailed
        ? err
        : new BuildFailed('finalize', `the build failed: ${errorMessage(err)}`, log.tail.slice());
    deps.logger.warn(
      { buildId: build.id, step: failure.step, err: failure.message },
      'template build failed',
    );
    await finish(db, build, 'error', log, failure);
  } finally {
    clearInterval(poll);
  }
}

/** The build's sandboxes, if any are left (this attempt's, or an interrupted one's), destroyed. */
async function releaseSandbox(deps: BuildRunnerDeps, build: BuildRow): Promise<void> {
  const rows = await deps.db
    .selectFrom('sandboxes')
    .select('id')
    .where('build_id', '=', build.id)
    .where('status', 'in', ['pending', 'running', 'paused', 'missing', 'error'])
    .execute();
  for (const { id } of rows)
    await destroySandbox(deps, id).catch((err: unknown) =>
      deps.logger.warn(
        { buildId: build.id, sandboxId: id, err: errorMessage(err) },
        'build sandbox not destroyed',
      ),
    );
  await deps.db.updateTable('template_builds').set({ sandbox_id: null }).where('id', '=', build.id).execute();
}

async function finish(
  db: Db,
  build: BuildRow,
  status: 'ready' | 'error' | 'cancelled',
  log: BuildLog,
  failure?: { step: string; message: string; tail: string[] },
  note?: string,
  artifactId?: string,
): Promise<void> {
  if (failure) log.line('error', failure.step, failure.message);
  else if (note) log.line('warn', undefined, note);
  else log.line('info', 'finalize', 'build ready');
  await log.flush();
  await db
    .updateTable('template_builds')
    .set({
      status,
      finished_at: new Date(),
      current_step: null,
      spec: stripSecrets(build.spec),
      reason: failure
        ? JSON.stringify({ step: failure.step, message: failure.message, log_tail: failure.tail })
        : status === 'cancelled'
          ? JSON.stringify({ step: 'finalize', message: 'cancelled', log_tail: [] })
          : null,
      ...(artifactId ? { artifact_id: artifactId } : {}),
    })
    .where('id', '=', build.id)
    .execute();
}

/** The team whose sandbox runs the build: the build's, or for a platform build its admin's. */
async function sandboxTeam(db: Db, build: BuildRow): Promise<string> {
  if (build.team_id) return build.team_id;
  let query = db.selectFrom('team_members').select('team_id').orderBy('created_at').limit(1);
  if (build.created_by) query = query.where('user_id', '=', build.created_by);
  const member = await query.executeTakeFirst();
  if (!member) throw new BuildFailed('base', 'a platform build needs its administrator to be in a team');
  return member.team_id;
}

interface Layer {
  artifactId: string;
  state: BuildState;
  /** Steps already done in it. */
  done: number;
}

/** The newest cache layer that matches a prefix of the steps, if any. */
async function findLayer(db: Db, scope: string, keys: string[]): Promise<Layer | undefined> {
  if (keys.length === 0) return undefined;
  const hits = await db
    .selectFrom('build_cache')
    .innerJoin('templates', 'templates.id', 'build_cache.artifact_id')
    .select(['build_cache.key', 'build_cache.artifact_id', 'build_cache.state'])
    .where('build_cache.scope', '=', scope)
    .where('build_cache.key', 'in', keys)
    .execute();
  for (let i = keys.length - 1; i >= 0; i--) {
    const hit = hits.find((h) => h.key === keys[i]);
    if (hit) {
      await db
        .updateTable('build_cache')
        .set({ used_at: new Date() })
        .where('scope', '=', scope)
        .where('key', '=', keys[i]!)
        .execute();
      return { artifactId: hit.artifact_id, state: hit.state as BuildState, done: i + 1 };
    }
  }
  return undefined;
}

async function execute(
  deps: BuildRunnerDeps,
  opts: BuildRunnerOptions,
  build: BuildRow,
  log: BuildLog,
  signal: AbortSignal,
): Promise<string> {
  const { db } = deps;
  const spec = build.spec as BuildSpec;
  const scope = teamScope(build.team_id);
  const teamId = await sandboxTeam(db, build);
  const step = (i: number) => String(i + 1);

  // The base: what the steps start from, what identifies it for the cache, the state it gives.
  let base: ResolvedTemplate;
  let baseIdentity: string;
  let baseState: BuildState = INITIAL_STATE;
  if ('template' in spec.from) {
    try {
      base = await resolveTemplate(db, build.team_id ?? NO_TEAM, spec.from.template);
    } catch (err) {
      throw new BuildFailed(
        'base',
        `base template ${JSON.stringify(spec.from.template)}: ${errorMessage(err)}`,
      );
    }
    baseIdentity = `template:${base.agentName}`;
  } else {
    const image = await importedImage(deps, build, teamId, spec.from, log, signal);
    base = image.template;
    baseState = image.state;
    // By reference: a tag that moved is picked up by a build that skips the cache.
    baseIdentity = `image:${spec.from.image}`;
  }
  const keys = layerKeys(scope, baseIdentity, build.kind, spec.steps);
  const layer = build.skip_cache ? undefined : await findLayer(db, scope, keys);
  let state: BuildState = layer?.state ?? baseState;
  let from = base;
  if (layer) {
    from = await resolveArtifactRow(db, layer.artifactId, base.name);
    log.line('info', 'base', `cache: the first ${layer.done} of ${spec.steps.length} steps are reused`);
    await db
      .updateTable('template_builds')
      .set({ cached_steps: layer.done, steps_done: layer.done })
      .where('id', '=', build.id)
      .execute();
  } else if (build.skip_cache) log.line('info', 'base', 'cache skipped: every step runs');
  // A snapshot with nothing started after the steps is the state after the last step: that layer.
  const outputIsLastLayer = build.kind === 'snapshot' && !spec.startCmd && !spec.healthcheck;
  if (layer && outputIsLastLayer && layer.done === spec.steps.length && spec.steps.length > 0) {
    log.line('info', 'finalize', 'every step is in the cache: the template takes the cached state');
    await adoptOutput(deps, build, layer.artifactId);
    return layer.artifactId;
  }
  // What the build's snapshots need below them: an imported image (`base` is on every host).
  const baseArtifactId = from.snapshot
    ? from.files && from.files.length > 1
      ? from.files[0]!.id
      : null
    : (from.files?.at(-1)?.id ?? null);

  log.line('info', 'base', `starting a sandbox from ${from.name}`);
  const { row: sandbox } = await createSandbox(
    deps,
    teamId,
    {
      template: base.name,
      resolved: from,
      vcpus: from.snapshot ? undefined : build.vcpus,
      memoryMb: from.snapshot ? undefined : build.memory_mb,
      diskMb: from.snapshot ? undefined : build.disk_mb,
      timeoutSec: 0,
      metadata: { 'wrenn.build': build.id },
      env: {},
      onTimeout: 'kill',
      buildId: build.id,
    },
    // Not cancelled half-way: a create the agent finishes after its caller left has no row to
    // find it by. A cancel is seen once it is recorded, below.
  ).catch((err: unknown) => {
    throw new BuildFailed('base', `the build's sandbox did not start: ${errorMessage(err)}`);
  });
  await db
    .updateTable('template_builds')
    .set({ sandbox_id: sandbox.id, host_id: sandbox.host_id })
    .where('id', '=', build.id)
    .execute();
  signal.throwIfAborted();
  const agent = await deps.hosts.agent(sandbox.host_id);
  const ctx: StepContext = {
    deps,
    agent,
    sandboxId: sandbox.id,
    log,
    signal,
    build,
    opts,
    baseArtifactId,
    uids: new Map(),
  };
  let lastLayer: string | undefined;
  // An image's WorkingDir exists once its container runs (Docker makes it); so here.
  if (!layer && state.workdir)
    await mustSucceed(
      ctx,
      'base',
      'mkdir -p "$WRENN_DIR"',
      { ...state, workdir: undefined },
      { WRENN_DIR: state.workdir },
      'root',
    );

  for (let i = layer?.done ?? 0; i < spec.steps.length; i++) {
    signal.throwIfAborted();
    const current = spec.steps[i]!;
    const label = step(i);
    await db
      .updateTable('template_builds')
      .set({ current_step: label, steps_done: i })
      .where('id', '=', build.id)
      .execute();
    log.line('info', label, `[${i + 1}/${spec.steps.length}] ${describeStep(current)}`);
    const t0 = Date.now();
    try {
      state = await runStep(ctx, current, state, label);
    } catch (err) {
      if (err instanceof BuildFailed || signal.aborted) throw err;
      throw new BuildFailed(label, `step ${label}: ${errorMessage(err)}`, log.tail.slice());
    }
    const ms = Date.now() - t0;
    log.line('debug', label, `done in ${ms} ms`);
    const changesFiles = current.type === 'run' || current.type === 'copy';
    const last = i === spec.steps.length - 1;
    if ((changesFiles && ms >= opts.cacheMinStepMs) || last) {
      const kept = await keepLayer(ctx, scope, keys[i]!, state, label);
      if (last) lastLayer = kept;
    }
  }
  await db
    .updateTable('template_builds')
    .set({ steps_done: spec.steps.length, current_step: 'finalize' })
    .where('id', '=', build.id)
    .execute();

  if (spec.startCmd) await startCommand(ctx, spec, state);
  if (spec.healthcheck)
    await untilReady(
      ctx,
      spec.healthcheck,
      state,
      spec.readyTimeoutSec ?? opts.readyTimeoutSec,
      'healthcheck',
    );
  const output = outputIsLastLayer && lastLayer ? lastLayer : await takeOutput(ctx, build, state);
  await adoptOutput(deps, build, output);
  return output;
}

/** An OCI image pulled by an agent for this scope, reused by later builds unless they skip the cache. */
async function importedImage(
  deps: BuildRunnerDeps,
  build: BuildRow,
  teamId: string,
  from: { image: string; credentials?: { username: string; password: string } },
  log: BuildLog,
  signal: AbortSignal,
): Promise<{ template: ResolvedTemplate; state: BuildState }> {
  const { db } = deps;
  const scope = teamScope(build.team_id);
  const key = createHash('sha256').update(`image\0${from.image}`).digest('hex');
  if (!build.skip_cache) {
    const hit = await db
      .selectFrom('build_cache')
      .innerJoin('templates', 'templates.id', 'build_cache.artifact_id')
      .select(['build_cache.artifact_id', 'build_cache.state'])
      .where('build_cache.scope', '=', scope)
      .where('build_cache.key', '=', key)
      .executeTakeFirst();
    if (hit) {
      log.line('info', 'base', `image ${from.image}: pulled before, reused`);
      return {
        template: await resolveArtifactRow(db, hit.artifact_id, from.image),
        state: hit.state as BuildState,
      };
    }
  }
  const need = { vcpus: build.vcpus, memoryMb: build.memory_mb, diskMb: build.disk_mb };
  const hostId = await deps.hosts.place(teamId, need, {});
  const agent = await deps.hosts.agent(hostId);
  const id = randomUUID();
  log.line('info', 'base', `pulling ${from.image}`);
  const started = Date.now();
  let pulled: hostagent.ImportImageResponse;
  try {
    pulled = await agent.importImage(
      {
        name: agentTemplateName({ id, kind: 'image' }),
        image: from.image,
        username: from.credentials?.username ?? '',
        password: from.credentials?.password ?? '',
      },
      { signal },
    );
  } catch (err) {
    throw new BuildFailed('base', `image ${from.image}: ${errorMessage(err)}`);
  }
  log.line('info', 'base', `pulled ${from.image} (${pulled.digest}) in ${Date.now() - started} ms`);
  const state: BuildState = {
    env: Object.fromEntries(
      pulled.env.map((pair) => {
        const eq = pair.indexOf('=');
        return eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
      }),
    ),
    ...(pulled.workdir ? { workdir: pulled.workdir } : {}),
    // The image's own user when it names one; otherwise the sandbox's (`user`, which the import adds).
    ...(pulled.user && pulled.user !== 'root' && pulled.user !== '0'
      ? { user: pulled.user.split(':')[0]! }
      : {}),
  };
  await db.transaction().execute(async (tx) => {
    await tx
      .insertInto('templates')
      .values({
        id,
        team_id: build.team_id,
        name: `image-${id}`,
        kind: 'image',
        origin: 'artifact',
        source_sandbox_id: null,
        vcpus: build.vcpus,
        memory_mb: build.memory_mb,
        disk_mb: build.disk_mb,
        size_bytes: pulled.template?.sizeBytes ?? 0,
        // Not its User: a uid is only resolved to a name inside a sandbox (the build's does it).
        defaults: JSON.stringify({ env: state.env, workdir: state.workdir }),
      })
      .execute();
    if (hostId)
      await tx.insertInto('template_replicas').values({ template_id: id, host_id: hostId }).execute();
    await putCacheEntry(tx, scope, key, id, state);
  });
  return { template: await resolveArtifactRow(db, id, from.image), state };
}

interface StepContext {
  deps: BuildRunnerDeps;
  agent: AgentClient;
  sandboxId: string;
  log: BuildLog;
  signal: AbortSignal;
  build: BuildRow;
  opts: BuildRunnerOptions;
  /** The imported image below what the build makes (its files must travel with them). */
  baseArtifactId: string | null;
  /** Names of users given by uid, as looked up in the sandbox. */
  uids: Map<string, string>;
}

async function runStep(
  ctx: StepContext,
  step: BuildStep,
  state: BuildState,
  label: string,
): Promise<BuildState> {
  switch (step.type) {
    case 'run': {
      await mustSucceed(ctx, label, step.command, { ...state, user: step.user ?? state.user });
      return state;
    }
    case 'copy':
      await copyStep(ctx, step, state, label);
      return state;
    case 'workdir': {
      // Docker makes the directory; so does E2B.
      await mustSucceed(ctx, label, 'mkdir -p "$WRENN_DIR"', state, { WRENN_DIR: step.path }, 'root');
      return applyStateStep(state, step);
    }
    case 'env':
    case 'user':
      return applyStateStep(state, step);
  }
}

/** Runs a shell command in the build's sandbox, its output into the log; a non-zero exit fails the step. */
async function mustSucceed(
  ctx: StepContext,
  label: string,
  script: string,
  state: BuildState,
  extraEnv: Record<string, string> = {},
  user?: string,
): Promise<void> {
  const result = await shell(ctx, label, script, state, extraEnv, user, ctx.opts.stepTimeoutMs);
  if (result.timedOut) throw new BuildFailed(label, `step ${label} timed out`, ctx.log.tail.slice());
  if (result.exitCode !== 0)
    throw new BuildFailed(
      label,
      `step ${label} failed with exit code ${result.exitCode}`,
      ctx.log.tail.slice(),
    );
}

async function shell(
  ctx: StepContext,
  label: string | undefined,
  script: string,
  state: BuildState,
  extraEnv: Record<string, string>,
  user: string | undefined,
  timeoutMs: number,
  level: LogLevel = 'info',
): Promise<{ exitCode: number; timedOut: boolean }> {
  const who = await userName(ctx, user ?? state.user);
  const events = ctx.agent.execStream(
    {
      sandboxId: ctx.sandboxId,
      command: {
        cmd: '/bin/sh',
        args: ['-c', script],
        env: { ...state.env, ...extraEnv },
        cwd: state.workdir ?? '',
        user: who,
        timeoutMs,
      },
    },
    { signal: ctx.signal },
  );
  const carry = { stdout: '', stderr: '' };
  const emit = (stream: 'stdout' | 'stderr', chunk: Uint8Array, end = false) => {
    const text = carry[stream] + Buffer.from(chunk).toString('utf8');
    const lines = text.split('\n');
    carry[stream] = end ? '' : lines.pop()!;
    for (const line of lines)
      if (line || !end) ctx.log.line(stream === 'stderr' && level === 'info' ? 'info' : level, label, line);
  };
  let exit = { exitCode: -1, timedOut: false };
  for await (const event of events) {
    const e = event.event;
    if (e.case === 'stdout' || e.case === 'stderr') emit(e.case, e.value);
    else if (e.case === 'exited') exit = { exitCode: e.value.exitCode, timedOut: e.value.timedOut };
  }
  for (const stream of ['stdout', 'stderr'] as const) if (carry[stream]) emit(stream, new Uint8Array(), true);
  return exit;
}

/**
 * The name of a user given by uid (an image's config says `User: 1000`; Docker takes either), read
 * from the sandbox's own /etc/passwd: commands are run as a named user.
 */
async function userName(ctx: StepContext, user: string | undefined): Promise<string> {
  if (!user || !/^\d+$/.test(user)) return user ?? '';
  const known = ctx.uids.get(user);
  if (known) return known;
  const { stdout, exitCode } = await ctx.agent.exec(
    {
      sandboxId: ctx.sandboxId,
      command: {
        cmd: '/bin/sh',
        args: ['-c', 'awk -F: -v uid="$WRENN_UID" \'$3 == uid { print $1; exit }\' /etc/passwd'],
        env: { WRENN_UID: user },
        user: 'root',
        timeoutMs: 10_000,
      },
    },
    { signal: ctx.signal },
  );
  const name = Buffer.from(stdout).toString().trim();
  if (exitCode !== 0 || !name)
    throw new BuildFailed('base', `user ${user}: no such uid in the image's /etc/passwd`);
  ctx.uids.set(user, name);
  return name;
}

// COPY with Docker's rules: a directory's contents go into dest; a file goes into dest when it is a
// directory (or ends with /), else becomes dest. Owner and mode are set on the extracted copy first,
// so only what is copied changes.
const COPY_SCRIPT = `set -e
T=$(mktemp -d)
trap 'rm -rf "$T" "$WRENN_ARCHIVE"' EXIT
if [ "$WRENN_GZIP" = 1 ]; then tar -xzf "$WRENN_ARCHIVE" -C "$T"; else tar -xf "$WRENN_ARCHIVE" -C "$T"; fi
cd "$T"
n=0
for s in $WRENN_SRC; do
  [ -e "$s" ] || [ -L "$s" ] || continue
  n=$((n+1))
  chown -R "$WRENN_OWNER:" "$s" 2>/dev/null || chown -R "$WRENN_OWNER" "$s"
  if [ -n "$WRENN_MODE" ]; then chmod -R "$WRENN_MODE" "$s"; fi
  case "$WRENN_DEST" in /*) d="$WRENN_DEST";; *) d="$WRENN_CWD/$WRENN_DEST";; esac
  if [ -d "$s" ] && [ ! -L "$s" ]; then
    mkdir -p "$d"; cp -a "$s"/. "$d"/
  elif [ -d "$d" ] || [ "\${d%/}" != "$d" ]; then
    mkdir -p "$d"; cp -a "$s" "$d"/
  else
    mkdir -p "$(dirname "$d")"; cp -a "$s" "$d"
  fi
done
[ "$n" -gt 0 ] || { echo "COPY: nothing in the uploaded files matches $WRENN_SRC" >&2; exit 1; }`;

async function copyStep(
  ctx: StepContext,
  step: Extract<BuildStep, { type: 'copy' }>,
  state: BuildState,
  label: string,
) {
  const scope = teamScope(ctx.build.team_id);
  const { files } = ctx.deps;
  if (!(await files.has(scope, step.filesHash)))
    throw new BuildFailed(label, `COPY ${step.src}: no uploaded files with hash ${step.filesHash}`);
  const archive = `/tmp/.wrenn-copy-${randomUUID()}.tar`;
  const source = createReadStream(files.path(scope, step.filesHash), { highWaterMark: 1 << 20 });
  let size = 0;
  const sandboxId = ctx.sandboxId;
  async function* requests(): AsyncGenerator<
    MessageInitShape<typeof hostagent.WriteFileStreamRequestSchema>
  > {
    yield { part: { case: 'header', value: { sandboxId, path: archive, user: 'root' } } };
    for await (const chunk of source as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      yield { part: { case: 'chunk', value: chunk } };
    }
    yield { part: { case: 'end', value: { size: BigInt(size) } } };
  }
  try {
    await ctx.agent.writeFileStream(requests(), { signal: ctx.signal });
  } finally {
    source.destroy();
  }
  ctx.log.line('debug', label, `uploaded files: ${size} bytes`);
  await mustSucceed(
    ctx,
    label,
    COPY_SCRIPT,
    { ...state, workdir: undefined },
    {
      WRENN_ARCHIVE: archive,
      WRENN_GZIP: (await files.isGzip(scope, step.filesHash)) ? '1' : '0',
      WRENN_SRC: step.src,
      WRENN_DEST: step.dest,
      WRENN_CWD: state.workdir ?? (state.user === 'root' ? '/root' : '/home/user'),
      // The uploader's uids mean nothing here: the files are the current user's, as in E2B.
      WRENN_OWNER: step.user ?? state.user ?? DEFAULT_USER,
      WRENN_MODE: step.mode ?? '',
    },
    'root',
  );
}

/** Starts the start command detached (it outlives this exec and the snapshot keeps it running), then waits for ready. */
async function startCommand(ctx: StepContext, spec: BuildSpec, state: BuildState): Promise<void> {
  ctx.log.line('info', 'finalize', `start command: ${spec.startCmd}`);
  const detach = `if command -v setsid >/dev/null 2>&1; then setsid sh -c "$WRENN_START" </dev/null >>${START_LOG} 2>&1 &
else nohup sh -c "$WRENN_START" </dev/null >>${START_LOG} 2>&1 & fi`;
  await mustSucceed(ctx, 'finalize', detach, state, { WRENN_START: spec.startCmd! });
  if (spec.readyCmd)
    await untilReady(
      ctx,
      spec.readyCmd,
      state,
      spec.readyTimeoutSec ?? ctx.opts.readyTimeoutSec,
      'ready check',
    );
}

/** Runs `check` until it exits 0; past the timeout the build fails with the start command's output. */
async function untilReady(
  ctx: StepContext,
  check: string,
  state: BuildState,
  timeoutSec: number,
  what: string,
) {
  const deadline = Date.now() + timeoutSec * 1000;
  let tries = 0;
  for (;;) {
    ctx.signal.throwIfAborted();
    tries++;
    const left = deadline - Date.now();
    const result = await shell(
      ctx,
      'finalize',
      check,
      state,
      {},
      undefined,
      Math.max(1000, Math.min(left, 60_000)),
      'debug',
    );
    if (result.exitCode === 0 && !result.timedOut) {
      ctx.log.line('info', 'finalize', `${what} passed (try ${tries})`);
      return;
    }
    if (Date.now() >= deadline) {
      // The start command's own output says why, more often than the check's.
      if (what === 'ready check')
        await shell(
          ctx,
          'finalize',
          `tail -n ${TAIL_LINES} ${START_LOG} 2>/dev/null`,
          state,
          {},
          'root',
          10_000,
          'warn',
        ).catch(() => undefined);
      throw new BuildFailed(
        'finalize',
        `${what} did not pass within ${timeoutSec} s (${tries} tries): ${check}`,
        ctx.log.tail.slice(),
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Records a snapshot of the build's sandbox as a template row of its own (an artifact). */
async function snapshotArtifact(
  ctx: StepContext,
  kind: 'snapshot' | 'image',
  name: string,
  baseArtifactId: string | null,
  state: BuildState,
) {
  const { db } = ctx.deps;
  const id = randomUUID();
  const agentName = agentTemplateName({ id, kind });
  const defaults = { ...state, user: state.user ? await userName(ctx, state.user) : undefined };
  const { template } =
    kind === 'snapshot'
      ? await ctx.agent.createSnapshot({ sandboxId: ctx.sandboxId, name: agentName })
      : await ctx.agent.flattenRootfs({ sandboxId: ctx.sandboxId, name: agentName });
  const sandbox = await db
    .selectFrom('sandboxes')
    .select('host_id')
    .where('id', '=', ctx.sandboxId)
    .executeTakeFirstOrThrow();
  try {
    await db.transaction().execute(async (tx) => {
      await tx
        .insertInto('templates')
        .values({
          id,
          team_id: ctx.build.team_id,
          name,
          kind,
          origin: 'artifact',
          source_sandbox_id: null,
          vcpus: template!.vcpus || ctx.build.vcpus,
          memory_mb: template!.memoryMb || ctx.build.memory_mb,
          disk_mb: template!.diskMb || ctx.build.disk_mb,
          size_bytes: template!.sizeBytes,
          base_artifact_id: baseArtifactId,
          defaults: JSON.stringify(defaults),
        })
        .execute();
      if (sandbox.host_id)
        await tx
          .insertInto('template_replicas')
          .values({ template_id: id, host_id: sandbox.host_id })
          .execute();
    });
  } catch (err) {
    await ctx.agent.deleteSnapshot({ name: agentName }).catch(() => undefined);
    throw err;
  }
  return id;
}

/** The cache entry `key` of `scope` names this artifact now (made, or moved from an older one). */
async function putCacheEntry(db: Db, scope: string, key: string, artifactId: string, state: BuildState) {
  await db
    .insertInto('build_cache')
    .values({ scope, key, artifact_id: artifactId, state: JSON.stringify(state) })
    .onConflict((oc) =>
      oc
        .columns(['scope', 'key'])
        .doUpdateSet({ artifact_id: artifactId, state: JSON.stringify(state), used_at: new Date() }),
    )
    .execute();
}

/** Keeps the sandbox's state after a step as a cache layer; returns the layer's artifact. */
async function keepLayer(ctx: StepContext, scope: string, key: string, state: BuildState, label: string) {
  const { db } = ctx.deps;
  const started = Date.now();
  const id = await snapshotArtifact(
    ctx,
    'snapshot',
    `cache-${key.slice(0, 40)}-${randomUUID().slice(0, 8)}`,
    ctx.baseArtifactId,
    state,
  );
  const previous = await db
    .selectFrom('build_cache')
    .select('artifact_id')
    .where('scope', '=', scope)
    .where('key', '=', key)
    .executeTakeFirst();
  await putCacheEntry(db, scope, key, id, state);
  if (previous) await dropArtifactIfUnused(ctx.deps, previous.artifact_id);
  ctx.log.line('debug', label, `cache layer kept in ${Date.now() - started} ms`);
  await pruneCache(ctx.deps, scope, ctx.opts.cacheLayersKept);
  return id;
}

async function pruneCache(deps: BuildRunnerDeps, scope: string, kept: number) {
  const stale = await deps.db
    .selectFrom('build_cache')
    .select(['key', 'artifact_id'])
    .where('scope', '=', scope)
    .orderBy('used_at', 'desc')
    .offset(kept)
    .limit(100)
    .execute();
  for (const layer of stale) {
    await deps.db.deleteFrom('build_cache').where('scope', '=', scope).where('key', '=', layer.key).execute();
    await dropArtifactIfUnused(deps, layer.artifact_id);
  }
}

/** The build's output: a snapshot (or flattened image) of its sandbox now. */
async function takeOutput(ctx: StepContext, build: BuildRow, state: BuildState): Promise<string> {
  ctx.log.line(
    'info',
    'finalize',
    build.kind === 'image' ? 'flattening the root filesystem' : 'taking the snapshot',
  );
  return snapshotArtifact(
    ctx,
    build.kind,
    `build-${build.id}`,
    build.kind === 'snapshot' ? ctx.baseArtifactId : null,
    state,
  );
}

/** Makes `artifactId` the template's current files and tags the build; the files it replaces go if unused. */
async function adoptOutput(deps: BuildRunnerDeps, build: BuildRow, artifactId: string): Promise<void> {
  const { db } = deps;
  const row = await db
    .selectFrom('templates')
    .select(['kind', 'vcpus', 'memory_mb', 'disk_mb'])
    .where('id', '=', artifactId)
    .executeTakeFirstOrThrow();
  const previous = await db
    .selectFrom('templates')
    .select('artifact_id')
    .where('id', '=', build.template_id)
    .executeTakeFirst();
  await db.transaction().execute(async (tx) => {
    await tx
      .updateTable('templates')
      .set({
        artifact_id: artifactId,
        kind: row.kind,
        vcpus: row.vcpus,
        memory_mb: row.memory_mb,
        disk_mb: row.disk_mb,
      })
      .where('id', '=', build.template_id)
      .execute();
    await tx
      .updateTable('template_builds')
      .set({ artifact_id: artifactId })
      .where('id', '=', build.id)
      .execute();
    for (const tag of new Set(['default', ...build.tags]))
      await tx
        .insertInto('template_tags')
        .values({ template_id: build.template_id, tag, build_id: build.id })
        .onConflict((oc) => oc.columns(['template_id', 'tag']).doUpdateSet({ build_id: build.id }))
        .execute();
  });
  const old = previous?.artifact_id;
  if (old && old !== artifactId) await dropArtifactIfUnused(deps, old);
}
