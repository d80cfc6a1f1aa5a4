import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '@wrenn/core';
import { slotAddresses, type NetworkSlot } from '../network/addresses.js';
import { InstanceNames } from '../instance-names.js';
import type { RuntimeSandboxState } from '../runtime/driver.js';
import { sandboxPaths, type SandboxPaths } from '../storage/layout.js';
import type { Kept } from '../services/janitor.js';
import { CHECKPOINT_SETTLE_MS, recoverFromFailedCheckpoint } from './checkpoint-recovery.js';
import { restorePaused } from './pause-resume.js';
import { clearIntent, readIntent, type Intent } from './journal.js';
import { guardMemory } from './memory-guard.js';
import {
  newRecord,
  readSandboxState,
  writeSandboxState,
  type SavedSandbox,
  type SandboxRecord,
} from './record.js';
import { markRunning, releaseResources, sandboxLogger, type SandboxContext } from './resources.js';
import { planRecovery, type RecoveryPlan } from './restart-plan.js';
import { transition } from './state.js';
import { isPoolRuntimeId } from './warm-pool.js';

// envd of a sandbox that kept running answers at once; one woken from a quiesce within a second.
const ADOPT_ENVD_TIMEOUT_MS = 10_000;

/** One sandbox directory a previous agent left, with what was found and what is to be done. */
interface Found {
  dir: string;
  paths: SandboxPaths;
  saved?: SavedSandbox;
  intent?: Intent;
  runtime?: RuntimeSandboxState;
  /** The slot a sandbox still holds (its runtime's namespace, else its record's). */
  slotIndex?: number;
  /** Why a sandbox whose runtime is gone stopped (asked before the janitor removes its cgroups). */
  exitReason?: string;
  plan: RecoveryPlan;
}

export interface RestartReport {
  running: string[];
  paused: string[];
  stopped: string[];
  ms: number;
}

/**
 * At start: takes over what a previous agent of this instance left. Every sandbox it recorded ends
 * running (adopted where it runs, or brought back from a pause cut short), paused (on disk) or
 * stopped (with the reason, its resources released); everything else goes (`cleanUp`: the janitor,
 * told what the adopted sandboxes keep). Pooled sandboxes no one claimed are not recorded: they go.
 */
export async function recoverSandboxes(
  ctx: SandboxContext,
  cleanUp: (kept: Kept) => Promise<void>,
): Promise<RestartReport> {
  const started = performance.now();
  const { layout } = ctx.deps;
  const dirs = await readdir(layout.sandboxesDir).catch(() => [] as string[]);
  const found = await Promise.all(dirs.map((dir) => inspect(ctx, dir)));
  const kept = keptBy(found);
  for (const index of kept.slots) ctx.deps.slots.reserve(index);
  await cleanUp(kept);

  const report: RestartReport = { running: [], paused: [], stopped: [], ms: 0 };
  await Promise.all(
    found.map(async (f) => {
      const record = await carryOut(ctx, f).catch((err: unknown) => giveUp(ctx, f, err));
      if (!record) return;
      await clearIntent(f.paths).catch(() => undefined);
      const list =
        record.state === 'running'
          ? report.running
          : record.state === 'paused'
            ? report.paused
            : report.stopped;
      list.push(record.info.id);
    }),
  );
  report.ms = Math.round(performance.now() - started);
  if (found.some((f) => f.saved))
    ctx.deps.logger.info(report, 'took over the sandboxes of the previous agent');
  return report;
}

async function inspect(ctx: SandboxContext, dir: string): Promise<Found> {
  const { runtime, layout, config } = ctx.deps;
  const paths = sandboxPaths(layout, dir);
  let saved = await readSandboxState(paths).catch(() => undefined);
  // A record is adopted only in its own directory (or, claimed from a warm pool, the pool member's).
  if (saved && saved.info.id !== dir && !isPoolRuntimeId(dir)) saved = undefined;
  if (saved && ctx.registry.has(saved.info.id)) saved = undefined;
  const intent = await readIntent(paths);
  // A checkpoint or restore the previous agent started finishes on its own: its outcome decides.
  // Only an operation in the journal runs one (a create in flight has no record yet).
  if (saved && intent && !(await runtime.waitForCommands(dir, CHECKPOINT_SETTLE_MS)))
    ctx.deps.logger.warn({ dir }, 'a runtime command of the previous agent still runs; going on without it');
  const state = saved ? await runtime.inspect(dir).catch(() => undefined) : undefined;
  const alive = state && (state.status === 'running' || state.status === 'paused') ? state : undefined;
  const names = new InstanceNames(config.instance);
  const netns = alive?.netnsPath ? path.basename(alive.netnsPath) : undefined;
  const slotIndex =
    netns && names.ownsNetns(netns) ? Number(netns.slice(names.netnsPrefix.length)) : saved?.slotIndex;
  const plan = planRecovery({
    saved:
      saved?.info.status === 'running' || saved?.info.status === 'paused' ? saved.info.status : undefined,
    intent: intent?.op,
    resumeAfter: intent?.resumeAfter === true,
    hasCheckpoint: existsSync(paths.checkpoint),
    hasPartial: existsSync(paths.checkpointPartial),
    runtime: !alive ? 'gone' : alive.status === 'paused' ? 'frozen' : 'running',
  });
  const exitReason =
    plan.action === 'stopped' && plan.reason === 'exited'
      ? await runtime.exitReason(dir).catch(() => 'the sandbox exited unexpectedly')
      : undefined;
  return { dir, paths, saved, intent, runtime: alive, slotIndex, exitReason, plan };
}

/** What the janitor must leave alone: the runtime, slot and mounts of every sandbox that keeps running. */
function keptBy(found: Found[]): Kept {
  const kept = {
    runtimeIds: new Set<string>(),
    slots: new Set<number>(),
    mountedDirs: new Set<string>(),
    dirs: new Set<string>(),
  };
  for (const f of found) {
    const { action } = f.plan;
    if (action === 'remove' || action === 'stopped') continue;
    kept.dirs.add(f.dir);
    if (action === 'paused') continue;
    if (f.runtime) kept.runtimeIds.add(f.dir);
    // A pause cut short keeps the slot and mounts its recovery starts from (it releases them itself).
    if (f.slotIndex !== undefined) kept.slots.add(f.slotIndex);
    kept.mountedDirs.add(f.dir);
  }
  return kept;
}

async function carryOut(ctx: SandboxContext, f: Found): Promise<SandboxRecord | undefined> {
  const { plan, saved, paths } = f;
  if (!saved) return undefined;
  const logger = ctx.deps.logger.child({ sandboxId: saved.info.id });
  if (f.intent) logger.warn({ intent: f.intent, plan }, 'the previous agent died during an operation');
  switch (plan.action) {
    case 'remove':
      return undefined;
    case 'stopped':
      return stoppedRecord(
        ctx,
        f,
        plan.reason === 'exited'
          ? `stopped while the agent was down: ${f.exitReason ?? 'the sandbox exited unexpectedly'}`
          : 'lost while the agent was down: its checkpoint is missing',
      );
    case 'paused': {
      await rm(paths.checkpointPartial, { recursive: true, force: true });
      const record = newRecord('paused', saved.info, paths, saved.baseImage, saved.accessToken);
      record.runtimeId = f.dir;
      record.lastActive = saved.info.lastActiveAt.getTime();
      if (plan.finishPause) {
        // The checkpoint was complete and in place; only its record was not: written now.
        record.info.pausedAt = new Date();
        record.info.autoPaused = false;
        await writeSandboxState(record);
      }
      ctx.registry.add(record);
      // The snapshot failed with its agent; the sandbox it paused runs again, as it would have. A
      // restore that fails leaves it paused, which is still a known state.
      if (plan.resume)
        await restorePaused(ctx, record).catch((err: unknown) =>
          logger.error({ err: errorMessage(err) }, 'could not resume the sandbox a snapshot paused'),
        );
      return record;
    }
    case 'adopt-running':
    case 'recover-pause':
      return adoptRunning(ctx, f, plan);
  }
}

/**
 * Registers a sandbox whose runtime still runs (or, for a pause cut short, may have stopped after
 * saving itself) as this agent's, with its slot, pid and a fresh envd connection.
 */
async function adoptRunning(
  ctx: SandboxContext,
  f: Found,
  plan: Extract<RecoveryPlan, { action: 'adopt-running' | 'recover-pause' }>,
): Promise<SandboxRecord | undefined> {
  const { runtime, network, config, guest } = ctx.deps;
  const saved = f.saved!;
  const record = newRecord('creating', saved.info, f.paths, saved.baseImage, saved.accessToken);
  record.runtimeId = f.dir;
  const names = new InstanceNames(config.instance);
  const slot: NetworkSlot | undefined =
    f.slotIndex === undefined ? undefined : slotAddresses(f.slotIndex, config.slotSubnet.base, names);
  record.slot = slot;
  record.egress = saved.egress;
  record.pid = f.runtime?.pid || undefined;
  const logger = sandboxLogger(ctx, record);
  if (plan.action === 'recover-pause') {
    // Its rules are still in its namespace; its DNS for allowed names is this agent's to answer now.
    if (slot)
      await network
        .applyEgress(slot, record.egress, true)
        .catch((err: unknown) =>
          logger.error({ err: errorMessage(err) }, 'reapplying the egress policy failed'),
        );
    // As a pause that failed: woken if it still runs, restored from what it saved if it stopped.
    markRunning(record);
    transition(record, 'pausing');
    ctx.registry.add(record);
    await recoverFromFailedCheckpoint(ctx, record, new Error('the agent restarted during the pause'));
    if (record.state === 'running') {
      await guardAdopted(ctx, record);
      await writeSandboxState(record);
    }
    return record;
  }
  try {
    if (!slot) throw new Error('its network slot is unknown');
    // Its rules outlived the agent in its namespace; its DNS for allowed names did not.
    await network.applyEgress(slot, record.egress, true);
    if (plan.thaw) await runtime.thaw(f.dir);
    if (plan.wake) {
      // A resume cut short may not have activated the slot or woken envd: both are idempotent.
      await network.activate(slot);
      await runtime.signal(f.dir, 'SIGUSR1');
    }
    const envd = guest.connect(slot.slotIp, saved.accessToken, logger);
    const pid = record.pid;
    const hasExited = async () =>
      (pid !== undefined && !ctx.deps.pidAlive(pid)) || (await runtime.hasExited(f.dir));
    await envd.waitHealthy(ADOPT_ENVD_TIMEOUT_MS, undefined, hasExited).catch((err: unknown) => {
      envd.close();
      throw err;
    });
    record.envd = envd;
    await guardAdopted(ctx, record);
  } catch (err) {
    const reason = `lost when the agent restarted: it did not answer (${errorMessage(err)})`;
    logger.error({ err: errorMessage(err) }, 'an adopted sandbox does not work; releasing it');
    await releaseResources(ctx, record, reason, { keepLayer: false }).catch((e: unknown) =>
      logger.error({ err: errorMessage(e) }, 'releasing it left work undone'),
    );
    transition(record, 'destroyed');
    return stoppedRecord(ctx, f, reason);
  }
  markRunning(record);
  // The sandbox has moved on from a checkpoint a resume did not live to delete.
  await writeSandboxState(record);
  if (plan.dropCheckpoint) await rm(f.paths.checkpoint, { recursive: true, force: true });
  await rm(f.paths.checkpointPartial, { recursive: true, force: true });
  ctx.registry.add(record);
  return record;
}

/**
 * The memory guard of a sandbox another agent started: its host limit already has the headroom (set
 * again, the same), and the new watch looks at once for a crossing missed while no agent ran. A
 * guard that cannot be armed is logged, not a reason to give the sandbox up.
 */
async function guardAdopted(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  await guardMemory(ctx, record).catch((err: unknown) =>
    sandboxLogger(ctx, record).error({ err: errorMessage(err) }, 'could not guard its memory'),
  );
  // Its start ran without a CPU quota; the agent that started it may have died before setting it.
  await ctx.deps.runtime
    .limitCpu(record.runtimeId, record.info.vcpus)
    .catch((err: unknown) =>
      sandboxLogger(ctx, record).error({ err: errorMessage(err) }, 'could not limit its CPU'),
    );
}

/** A take-over that failed half-way: whatever the sandbox holds is released, it is known as stopped. */
async function giveUp(ctx: SandboxContext, f: Found, err: unknown): Promise<SandboxRecord | undefined> {
  const { logger, runtime, storage, network, slots, config } = ctx.deps;
  logger.error({ dir: f.dir, err: errorMessage(err) }, 'could not take over a sandbox; releasing it');
  const registered = f.saved && ctx.registry.lookup(f.saved.info.id);
  if (registered) ctx.registry.remove(registered.info.id);
  const release = async (what: string, fn: () => Promise<unknown>) =>
    fn().catch((e: unknown) =>
      logger.error({ dir: f.dir, step: what, err: errorMessage(e) }, 'release failed'),
    );
  await release('runtime', () => runtime.destroy(f.dir));
  const slot =
    registered?.slot ??
    (f.slotIndex === undefined
      ? undefined
      : slotAddresses(f.slotIndex, config.slotSubnet.base, new InstanceNames(config.instance)));
  if (slot) {
    await release('network', () => network.release(slot));
    slots.release(slot.index);
  }
  await release('storage', () => storage.destroy(f.paths, logger));
  return f.saved ? stoppedRecord(ctx, f, `lost when the agent restarted: ${errorMessage(err)}`) : undefined;
}

/** A sandbox known to have stopped: released already (by the janitor), kept so its owner reads why. */
function stoppedRecord(ctx: SandboxContext, f: Found, reason: string): SandboxRecord | undefined {
  const saved = f.saved;
  if (!saved || ctx.registry.has(saved.info.id)) return ctx.registry.lookup(saved?.info.id ?? '');
  const record = newRecord('paused', saved.info, f.paths, saved.baseImage, saved.accessToken);
  record.runtimeId = f.dir;
  transition(record, 'stopping', reason);
  transition(record, 'stopped');
  record.lifetime.abort();
  ctx.deps.logger.warn({ sandboxId: saved.info.id, reason }, 'sandbox of the previous agent stopped');
  ctx.registry.add(record);
  return record;
}
