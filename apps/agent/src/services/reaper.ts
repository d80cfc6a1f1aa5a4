import { errorMessage } from '@wrenn/core';
import { destroySandbox } from '../sandbox/destroy.js';
import { pauseSandbox } from '../sandbox/pause-resume.js';
import type { SandboxContext } from '../sandbox/resources.js';

/** How often the inactivity timeout is checked. */
export const REAPER_INTERVAL_MS = 2000;

/** Running sandboxes whose timeout passed with nothing in flight, to be paused. */
export function expired(ctx: SandboxContext, now = Date.now()): string[] {
  return ctx.registry
    .records()
    .filter(
      (r) =>
        r.state === 'running' &&
        r.info.timeoutSec > 0 &&
        r.activeCalls === 0 &&
        now - r.lastActive >= r.info.timeoutSec * 1000,
    )
    .map((r) => r.info.id);
}

/**
 * One pass of the inactivity reaper: pauses every expired sandbox; one that cannot be paused is
 * destroyed (an expired sandbox must not keep its resources). Not tied to any request: shutdown
 * waits for it rather than cutting it short.
 */
export async function pauseExpired(ctx: SandboxContext): Promise<void> {
  await Promise.allSettled(
    expired(ctx).map(async (id) => {
      const logger = ctx.deps.logger.child({ sandboxId: id });
      try {
        // Activity may have arrived while this pass was queued behind another operation.
        const record = ctx.registry.lookup(id);
        if (!record || !expired(ctx).includes(id)) return;
        await pauseSandbox(ctx, id, { auto: true });
        logger.info({ timeoutSec: record.info.timeoutSec }, 'paused after inactivity');
      } catch (err) {
        const record = ctx.registry.lookup(id);
        if (!record || record.state === 'paused') return;
        logger.warn({ err: errorMessage(err) }, 'could not pause an expired sandbox; destroying it');
        await destroySandbox(ctx, id).catch((e: unknown) =>
          logger.error({ err: errorMessage(e) }, 'destroy failed'),
        );
      }
    }),
  );
}
