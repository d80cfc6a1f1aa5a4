import { rename, rm, statfs } from 'node:fs/promises';
import {
  errorMessage,
  failedPrecondition,
  resourceExhausted,
  UndoStack,
  type EgressPolicy,
} from '@wrenn/core';
import { setEgress } from './egress.js';
import { sandboxPaths } from '../storage/layout.js';
import { isPoolRuntimeId } from './warm-pool.js';
import { journaled } from './journal.js';
import { recoverFromFailedCheckpoint } from './checkpoint-recovery.js';
import { checkpointDamage, damagedCheckpoint, forgetManifest, writeManifest } from './checkpoint-manifest.js';
import {
  newRecord,
  readPausedState,
  writePausedState,
  writeSandboxState,
  type SandboxInfo,
  type SandboxRecord,
} from './record.js';
import { touch } from './registry.js';
import {
  asConnectError,
  markRunning,
  phaseTimer,
  releaseResources,
  sandboxLogger,
  startRuntime,
  type SandboxContext,
} from './resources.js';
import { assertRunning, transition } from './state.js';

/**
 * Checkpoints the sandbox to disk and frees its runtime, memory and network slot. A failure leaves
 * it running. Pausing a paused sandbox changes nothing. `signal` is honoured until the checkpoint
 * starts: a checkpoint cut short leaves the sandbox saving itself, which costs a restore to undo.
 */
export async function pauseSandbox(
  ctx: SandboxContext,
  id: string,
  opts: { auto?: boolean; signal?: AbortSignal } = {},
): Promise<SandboxInfo> {
  const record = ctx.registry.find(id);
  // From the call, not the checkpoint: waiting behind another operation is part of a pause's time.
  const timer = phaseTimer();
  return ctx.registry.serially(record, async () => {
    if (record.state === 'paused') return { ...record.info };
    timer.phase('queue');
    opts.signal?.throwIfAborted();
    const startTeardown = await journaled(record.paths, { op: 'pause' }, async () => {
      timer.phase('journal');
      return checkpointToPaused(ctx, record, { auto: opts.auto ?? false, timer });
    });
    timer.phase('close');
    startTeardown();
    sandboxLogger(ctx, record).info({ ms: timer.total(), phases: timer.phases }, 'sandbox paused');
    return { ...record.info };
  });
}

/**
 * Saves the sandbox into its checkpoint dir and records it `paused`. On failure it is running again,
 * or — if the save went through even though the runtime reported an error — restored from what it
 * saved, or lost (`stopped`, with the reason). Returns what frees its runtime, slot and mounts (the
 * disk image stays), for the caller to start once its own small writes are done: the teardown's
 * process starts and unmounts hold those up by 20–40 ms. Freeing takes ~120 ms, after the answer;
 * every later operation on this sandbox waits for it.
 */
export async function checkpointToPaused(
  ctx: SandboxContext,
  record: SandboxRecord,
  { auto, timer = phaseTimer() }: { auto: boolean; timer?: ReturnType<typeof phaseTimer> },
): Promise<() => void> {
  const { runtime } = ctx.deps;
  const { info, paths } = record;
  assertRunning(record, 'pause');
  const unsupported = await runtime.checkpointSupport();
  if (unsupported) throw failedPrecondition(`cannot pause sandbox ${info.id}: ${unsupported}`);
  await ensureRoomForCheckpoint(ctx, record);
  // It may have died while the runtime was asked.
  assertRunning(record, 'pause');
  const logger = sandboxLogger(ctx, record);
  timer.phase('room');
  transition(record, 'pausing');
  let saved = false;
  try {
    await rm(paths.checkpointPartial, { recursive: true, force: true });
    // envd is not asked to stop listening first: a runsc that can pause at all (it has
    // --net-disconnect-ok) saves the listening socket and resets open connections, so the restored
    // envd answers at once (docs/gvisor.md). The agent's own connection goes first.
    record.envd?.close();
    try {
      await runtime.checkpoint(record.runtimeId, paths.checkpointPartial);
    } catch (err) {
      await recoverFromFailedCheckpoint(ctx, record, err);
      const outcome = record.state === 'running' ? 'it keeps running' : `it is ${record.state}`;
      if (diskFull(err))
        throw resourceExhausted(
          `pause sandbox ${info.id}: the host's disk is full (no space left on device for its checkpoint); ${outcome}`,
        );
      throw asConnectError(err, `pause sandbox ${info.id} (${outcome})`);
    }
    timer.phase('checkpoint');
    await rm(paths.checkpoint, { recursive: true, force: true });
    await forgetManifest(paths.checkpoint);
    await rename(paths.checkpointPartial, paths.checkpoint);
    timer.phase('swap');
    saved = true;
  } finally {
    // A failure before the save began (the quiesce, say) leaves the sandbox as it was.
    if (!saved && record.state === 'pausing') transition(record, 'running');
  }
  const startTeardown = () => {
    // A turn of the event loop first: the answer goes out before the teardown's process starts.
    record.teardown = new Promise((resolve) => setImmediate(resolve))
      .then(() => releaseResources(ctx, record, 'paused', { keepLayer: true }))
      .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'teardown after pause failed'))
      // After the answer, like the teardown: hashing the image costs the pause no latency.
      .then(() => writeManifest(paths.checkpoint))
      .catch((err: unknown) =>
        logger.warn({ err: errorMessage(err) }, 'could not record the checkpoint manifest'),
      )
      .finally(() => (record.teardown = undefined));
  };
  // The image is on disk: the pause has happened. The state file is what a restarted agent adopts.
  try {
    await enterPaused(record, auto);
  } catch (err) {
    startTeardown();
    throw err;
  }
  timer.phase('state');
  return startTeardown;
}

// The state file and what the memory estimate misses: a sandbox's checkpoint is its memory in use
// (written uncompressed) plus this.
const CHECKPOINT_OVERHEAD_BYTES = 32 << 20;

/**
 * Refuses a pause the disk has no room for, before anything is touched. It matters: a `runsc
 * checkpoint` that fails while writing (ENOSPC) ends the sandbox all the same (runsc kills it after
 * any save, `--leave-running` aside), and the half-written image cannot restore it. The estimate is
 * the memory in use (the cgroup's, less reclaimable cache), an overestimate: the sentry's own memory
 * is not in the image. Without an estimate (no stats) the pause goes ahead.
 */
async function ensureRoomForCheckpoint(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  const [stats, disk] = await Promise.all([
    ctx.deps.runtime.stats(record.runtimeId).catch(() => undefined),
    statfs(record.paths.dir).catch(() => undefined),
  ]);
  if (!stats || !disk) return;
  const needed = stats.memUsedBytes + CHECKPOINT_OVERHEAD_BYTES;
  const free = disk.bavail * disk.bsize;
  if (free >= needed) return;
  const mib = (n: number) => Math.round(n / (1 << 20));
  throw resourceExhausted(
    `pause sandbox ${record.info.id}: the host's disk is full (its checkpoint needs about ${mib(needed)} MiB, ${mib(free)} MiB free); it keeps running`,
  );
}

/** ENOSPC, from Node or in a runtime's output (runsc says "no space left on device"). */
function diskFull(err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ENOSPC' || /no space left on device/i.test(errorMessage(err));
}

/**
 * `pausing` → `paused`, on disk as well: the state file is what an agent that restarts adopts, so a
 * checkpoint it does not name is lost with the agent.
 */
async function enterPaused(record: SandboxRecord, auto: boolean): Promise<void> {
  const { info } = record;
  transition(record, 'paused', auto ? `paused after ${info.timeoutSec} s without activity` : '');
  info.autoPaused = auto;
  info.pausedAt = new Date();
  // Its envd is saved in the image: nothing answers at that address until a resume.
  info.envdAddress = '';
  await writePausedState(record);
}

/** Restores a paused sandbox into a fresh slot. A failure leaves it paused with its checkpoint. */
export async function resumeSandbox(
  ctx: SandboxContext,
  id: string,
  opts: { timeoutSec?: number; egress?: EgressPolicy } = {},
  signal?: AbortSignal,
): Promise<SandboxInfo> {
  const record = ctx.registry.find(id);
  return ctx.registry.serially(record, async () => {
    if (opts.timeoutSec !== undefined) record.info.timeoutSec = opts.timeoutSec;
    // The control plane's copy wins (it holds the policy wherever the sandbox moves); a running
    // sandbox gets it at once.
    if (opts.egress !== undefined) await setEgress(ctx, record, opts.egress);
    if (record.state === 'running') {
      touch(record);
      return { ...record.info };
    }
    // A resume waits for the CPU like a cold create: the warm pool's refill gives way.
    const done = ctx.pool?.demand();
    try {
      await journaled(record.paths, { op: 'resume' }, () => restorePaused(ctx, record, signal));
    } finally {
      done?.();
    }
    return { ...record.info };
  });
}

export async function restorePaused(
  ctx: SandboxContext,
  record: SandboxRecord,
  signal?: AbortSignal,
): Promise<void> {
  await record.teardown;
  const { info, paths } = record;
  if (record.state !== 'paused') throw failedPrecondition(`sandbox ${info.id} is ${info.status}, not paused`);
  const logger = sandboxLogger(ctx, record);
  const timer = phaseTimer();
  const undo = new UndoStack();
  // A truncated or missing file is refused before anything starts (a few stats).
  const truncated = await checkpointDamage(paths.checkpoint, { contents: false });
  if (truncated) throw damagedCheckpoint(info.id, truncated);
  transition(record, 'resuming');
  try {
    const prepareDisk = async () => {
      const lower = await ctx.deps.templates.imageRootfs(record.baseImage);
      // Before the mount: one that fails halfway leaves the disk mounted without the overlay.
      undo.push('unmount rootfs', () => ctx.deps.storage.unmount(paths, logger));
      await ctx.deps.storage.mount(paths, lower);
    };
    await startRuntime(ctx, record, { restoreFrom: paths.checkpoint }, undo, {
      signal,
      phase: timer.phase,
      prepareDisk,
    });
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'resume failed; the sandbox stays paused');
    await undo.run(logger);
    transition(record, 'paused');
    // Whether the image changed since the pause: then that is the cause, whatever runsc said.
    const damage = await checkpointDamage(paths.checkpoint, { contents: true }).catch(() => undefined);
    if (damage) throw damagedCheckpoint(info.id, damage);
    throw asConnectError(err, `resume sandbox ${info.id} (it stays paused)`);
  }
  markRunning(record);
  // The checkpoint is spent: the sandbox has moved on from it. The running record replaces the paused
  // one first: an agent that dies in between must not adopt a checkpoint older than the disk.
  await writeSandboxState(record)
    .then(() => rm(paths.checkpoint, { recursive: true, force: true }))
    .then(() => forgetManifest(paths.checkpoint))
    .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'could not record the resume'));
  logger.info({ ms: timer.total(), phases: timer.phases, slot: record.slot?.index }, 'sandbox resumed');
}

/**
 * Registers the paused sandbox whose directory is in place (left by a previous agent, or moved in
 * from another host). Undefined when the directory holds no paused state for this id. The directory
 * is named after the sandbox, or (one claimed from a warm pool) after the pooled sandbox it was.
 */
export async function adoptOne(ctx: SandboxContext, dir: string): Promise<SandboxRecord | undefined> {
  const paths = sandboxPaths(ctx.deps.layout, dir);
  const state = await readPausedState(paths).catch(() => undefined);
  if (!state || (state.info.id !== dir && !isPoolRuntimeId(dir)) || ctx.registry.has(state.info.id))
    return undefined;
  const record = newRecord('paused', state.info, paths, state.baseImage, state.accessToken);
  record.lastActive = state.info.lastActiveAt.getTime();
  ctx.registry.add(record);
  return record;
}
