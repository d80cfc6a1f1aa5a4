import { errorMessage, pollUntil } from '@wrenn/core';
import { writeSandboxState, type SandboxRecord } from './record.js';
import { sandboxLogger, type SandboxContext } from './resources.js';

const MiB = 1024 * 1024;

/**
 * How far past its memory size the host lets a sandbox's charge go before the kernel's OOM killer
 * ends the whole sandbox: room for what its processes allocate between crossing the size and the
 * kill taking effect. Measured (docs/gvisor.md, "Memory limits"): one process allocates ~0.7–1 GB/s
 * per vCPU, and the reaction (crossing → envd's kill → memory back) took 40–100 ms on a quiet host,
 * 0.3–1.1 s with the host's cores contended or the sandbox's own vCPU taken by many allocators.
 * 256 MiB was not enough (a loaded host lost a sandbox in 1 of ~10 rounds); 512 MiB per vCPU was.
 * It is a bound, not a reservation: a sandbox never holds more than size + headroom of host memory,
 * and only for the moment before the kill.
 */
export function memoryHeadroomMb(memoryMb: number, vcpus: number): number {
  return Math.max(512 * Math.max(1, vcpus), Math.ceil(memoryMb / 4));
}

// After a kill, the victim's memory returns to the host in ~1–120 ms (gVisor releases its pages):
// wait for that before choosing another victim, so one overshoot costs one process; but not long,
// other processes may be allocating meanwhile.
const RELEASE_WAIT_MS = 500;
const RELEASE_POLL_MS = 10;
// Over the size by file cache the kernel could not drop yet (dirty pages): look again this soon.
const CACHE_RECHECK_MS = 100;
// Over the size with envd not answering (starting, quiesced for a pause): try again this soon.
const ENVD_RETRY_MS = 100;
// Over the size and nothing left to kill (memory not held by any process, e.g. a full tmpfs).
const NOTHING_TO_KILL_RECHECK_MS = 1000;

interface GuardState {
  armed: boolean;
  running?: Promise<void>;
  again: boolean;
  timer?: NodeJS.Timeout;
}

const guards = new WeakMap<SandboxRecord, GuardState>();

/**
 * Memory containment for a sandbox whose runtime just started (or was adopted): past its memory size
 * the process the kernel's OOM killer would choose is killed inside the sandbox (envd picks it; never
 * init or envd), and the sandbox lives on. The host's limit sits `memoryHeadroomMb` above the size, so
 * the crossing is seen before the kernel would end the whole sandbox. Idempotent.
 */
export async function guardMemory(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  const state = guards.get(record) ?? { armed: false, again: false };
  guards.set(record, state);
  const { memoryMb, vcpus } = record.info;
  await ctx.deps.runtime.watchMemory(record.runtimeId, memoryMb, memoryHeadroomMb(memoryMb, vcpus), () =>
    check(ctx, record),
  );
  state.armed = true;
  // A crossing before the watch was armed (an adopted sandbox, a restore) is looked for now.
  check(ctx, record);
}

/** Ends the guard (pause, destroy, death): no more checks, no watch left with the runtime. */
export async function unguardMemory(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  const state = guards.get(record);
  if (state) {
    state.armed = false;
    clearTimeout(state.timer);
  }
  await ctx.deps.runtime.unwatchMemory(record.runtimeId);
  await state?.running;
}

/** Whether the guard is in force (tests). */
export function isMemoryGuarded(record: SandboxRecord): boolean {
  return guards.get(record)?.armed ?? false;
}

/** One containment pass at a time per sandbox; a crossing seen meanwhile runs another after it. */
function check(ctx: SandboxContext, record: SandboxRecord): void {
  const state = guards.get(record);
  if (!state?.armed) return;
  clearTimeout(state.timer);
  state.timer = undefined;
  if (state.running) {
    state.again = true;
    return;
  }
  state.running = contain(ctx, record, state)
    .catch((err: unknown) =>
      sandboxLogger(ctx, record).error({ err: errorMessage(err) }, 'memory containment failed'),
    )
    .finally(() => {
      state.running = undefined;
      if (state.again) {
        state.again = false;
        check(ctx, record);
      }
    });
}

function recheckIn(ctx: SandboxContext, record: SandboxRecord, state: GuardState, ms: number): void {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => check(ctx, record), ms);
}

async function contain(ctx: SandboxContext, record: SandboxRecord, state: GuardState): Promise<void> {
  const { runtime } = ctx.deps;
  const id = record.runtimeId;
  const limit = record.info.memoryMb * MiB;
  const logger = sandboxLogger(ctx, record);
  while (state.armed) {
    const memory = await runtime.memory(id);
    if (!memory) return; // the runtime is gone
    if (memory.inUseBytes < limit) {
      // Under its size: the kernel signals the next crossing, unless file cache keeps the charge over
      // it (then no crossing would come). Drop that cache, as the kernel would at a limit of `size`.
      if (memory.chargedBytes < limit) return;
      await runtime.reclaimCache(id);
      const after = await runtime.memory(id);
      if (!after) return;
      if (after.inUseBytes >= limit) continue;
      if (after.chargedBytes >= limit) recheckIn(ctx, record, state, CACHE_RECHECK_MS);
      return;
    }
    const envd = record.envd;
    if (!envd) {
      recheckIn(ctx, record, state, ENVD_RETRY_MS);
      return;
    }
    const seenAt = performance.now();
    let victim: Awaited<ReturnType<typeof envd.oomKill>>;
    try {
      victim = await envd.oomKill();
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'out of memory, and envd could not kill a process; retrying');
      recheckIn(ctx, record, state, ENVD_RETRY_MS);
      return;
    }
    if (!victim) {
      logger.warn(
        { inUseBytes: memory.inUseBytes, limitBytes: limit },
        'out of memory, and no process to kill (memory held outside processes, e.g. tmpfs)',
      );
      recheckIn(ctx, record, state, NOTHING_TO_KILL_RECHECK_MS);
      return;
    }
    const { info } = record;
    info.oomKills = (info.oomKills ?? 0) + 1;
    info.lastOomKill = {
      at: new Date(),
      pid: victim.pid,
      command: victim.command,
      memoryBytes: victim.rssBytes,
    };
    logger.warn(
      {
        pid: victim.pid,
        command: victim.command,
        processBytes: victim.rssBytes,
        sandboxBytes: memory.inUseBytes,
        limitBytes: limit,
        oomKills: info.oomKills,
        killMs: Math.round(performance.now() - seenAt),
      },
      'out of memory: killed the largest process in the sandbox; the sandbox lives on',
    );
    // The count survives an agent restart (adoption reads it back).
    if (record.state === 'running')
      await writeSandboxState(record).catch((err: unknown) =>
        logger.warn({ err: errorMessage(err) }, 'could not record the OOM kill'),
      );
    const killedAt = performance.now();
    let peakBytes = memory.inUseBytes;
    // Released: under the size, or down by half the victim's memory (others may still grow).
    const releasedBelow = Math.max(limit, memory.inUseBytes - victim.rssBytes / 2);
    const released = await pollUntil(
      async () => {
        const now = await runtime.memory(id);
        if (now) peakBytes = Math.max(peakBytes, now.inUseBytes);
        return !now || now.inUseBytes < releasedBelow ? true : undefined;
      },
      { timeoutMs: RELEASE_WAIT_MS, intervalMs: RELEASE_POLL_MS },
    );
    logger.debug(
      { releaseMs: Math.round(performance.now() - killedAt), released: released ?? false, peakBytes },
      'memory after the OOM kill',
    );
  }
}
