import { isBroken, reap } from '../sandbox/destroy.js';
import type { SandboxContext } from '../sandbox/resources.js';

/** How often the watchdog looks for sandboxes that died on their own. */
export const WATCHDOG_INTERVAL_MS = 1000;

/**
 * One pass of the watchdog: sandboxes whose runtime process died (host OOM kill, runtime crash)
 * become `stopped` with the reason, their calls in flight fail with it, and their resources are freed.
 */
export async function reapDead(ctx: SandboxContext): Promise<void> {
  for (const record of ctx.registry.records()) {
    if (await isBroken(ctx, record)) await reap(ctx, record);
  }
}
