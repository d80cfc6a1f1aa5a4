import { ConnectError, errorMessage, pollUntil } from '@wrenn/core';
import type { SandboxRecord } from './record.js';
import { releaseResources, type SandboxContext } from './resources.js';
import { transition } from './state.js';

/**
 * Removes the sandbox and everything it holds, running or paused. Every step runs even if one fails.
 * `signal` is honoured only until the release starts: half a destroy would help nobody.
 */
export async function destroySandbox(ctx: SandboxContext, id: string, signal?: AbortSignal): Promise<void> {
  const { registry } = ctx;
  const record = registry.find(id);
  await registry.serially(record, async () => {
    // A create that failed (it queued first) has removed the sandbox already.
    if (!registry.has(id) || record.state === 'destroyed') return;
    signal?.throwIfAborted();
    await record.teardown;
    // A sandbox that died is being released already: wait for that rather than start another.
    if (record.state === 'stopping') await record.releasing?.catch(() => undefined);
    if (record.state !== 'stopped') {
      // `error` is a release that failed: try again, every step is idempotent.
      await stopAndRelease(ctx, record, 'destroyed');
    } else {
      transition(record, 'destroyed');
    }
    registry.remove(id);
  });
}

/**
 * Moves the sandbox to `stopping` (synchronously, so nobody else starts a release of it too), frees
 * what it holds, and ends in `to` — or in `error`, saying what was left undone, and rethrows.
 * `explain` says why it stops when nobody asked (death, a lost pause); it becomes the status reason.
 */
export function stopAndRelease(
  ctx: SandboxContext,
  record: SandboxRecord,
  to: 'stopped' | 'destroyed',
  explain?: () => Promise<string>,
): Promise<void> {
  transition(record, 'stopping');
  record.releasing = (async () => {
    const reason = explain ? await explain() : undefined;
    if (reason) record.info.statusReason = reason;
    try {
      await releaseResources(ctx, record, reason ?? 'destroyed', { keepLayer: false });
    } catch (err) {
      const undone = errorMessage(err);
      transition(record, 'error', reason ? `${reason}; then ${undone}` : undone);
      throw err;
    }
    transition(record, to);
  })().finally(() => (record.releasing = undefined));
  return record.releasing;
}

/** At shutdown: running sandboxes are destroyed; paused ones stay on disk for the next agent. */
export async function destroyAll(ctx: SandboxContext): Promise<void> {
  const all = ctx.registry.records();
  const running = all.filter((r) => r.info.status !== 'paused');
  await Promise.allSettled([
    ...running.map((r) => destroySandbox(ctx, r.info.id)),
    ...all.map((r) => r.teardown),
  ]);
}

/**
 * Running on paper but not in fact: its process is gone, or the host's OOM killer took one of its
 * processes (a systrap stub or envd), which leaves a sandbox that cannot be trusted to work.
 */
export async function isBroken(ctx: SandboxContext, record: SandboxRecord): Promise<boolean> {
  if (record.state !== 'running' || !record.pid) return false;
  return !ctx.deps.pidAlive(record.pid) || (await ctx.deps.runtime.wasOomKilled(record.runtimeId));
}

/**
 * A sandbox that died on its own becomes `stopped` with the reason, its calls in flight fail with it,
 * and its resources are freed. The record stays (so its owner can read why) until DestroySandbox.
 */
export async function reap(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  // The watchdog and a failing call may both find the same corpse: only the first releases it.
  if (record.state !== 'running') return record.releasing?.catch(() => undefined);
  const { runtime, logger } = ctx.deps;
  const id = record.info.id;
  await stopAndRelease(ctx, record, 'stopped', async () => {
    // Asked before the release: the runtime forgets the sandbox when it is destroyed.
    const reason = await runtime.exitReason(record.runtimeId).catch(() => 'the sandbox exited unexpectedly');
    logger.warn({ sandboxId: id, reason }, 'sandbox died');
    return reason;
  }).catch(() => undefined);
}

/**
 * After a call to a sandbox failed at the connection level: if the sandbox died (its process may
 * still be exiting, so wait up to `graceMs`), the error that says why; otherwise undefined.
 */
export async function deathOf(
  ctx: SandboxContext,
  id: string,
  graceMs = 1000,
): Promise<ConnectError | undefined> {
  const record = ctx.registry.lookup(id);
  if (!record) return undefined;
  const lifetime = record.lifetime;
  // Done when it is found broken, or when it stopped for a reason already known.
  const broken = await pollUntil(
    async () => ((await isBroken(ctx, record)) ? true : lifetime.signal.aborted ? false : undefined),
    { timeoutMs: graceMs, intervalMs: 50 },
  );
  if (broken) await reap(ctx, record);
  const reason: unknown = lifetime.signal.reason;
  return lifetime.signal.aborted && reason instanceof ConnectError ? reason : undefined;
}
