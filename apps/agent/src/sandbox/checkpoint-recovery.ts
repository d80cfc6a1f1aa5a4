import { rm } from 'node:fs/promises';
import { errorMessage, UndoStack } from '@wrenn/core';
import { stopAndRelease } from './destroy.js';
import { writeSandboxState, type SandboxRecord } from './record.js';
import {
  markRunning,
  reconnectEnvd,
  releaseSlot,
  sandboxLogger,
  startRuntime,
  type SandboxContext,
} from './resources.js';
import { transition } from './state.js';

// How long a sandbox may take to finish a save that its runsc gave up on (it writes the whole memory).
export const CHECKPOINT_SETTLE_MS = 300_000;
const SETTLE_POLL_MS = 250;

/**
 * A checkpoint that failed leaves the sandbox in one of two places, and the runtime's exit status
 * does not say which: still running (the save never started, or was abandoned), or saving on its own
 * until it stops (the runsc that asked for the save died, but the sandbox holds the image files and
 * finishes). Wait until it is clearly one or the other, then bring it back to `running`; if neither
 * works, it is lost (`stopped`, with the reason).
 */
export async function recoverFromFailedCheckpoint(
  ctx: SandboxContext,
  record: SandboxRecord,
  cause: unknown,
  settleMs = CHECKPOINT_SETTLE_MS,
): Promise<void> {
  const { runtime } = ctx.deps;
  const { paths } = record;
  const logger = sandboxLogger(ctx, record);
  logger.warn({ err: errorMessage(cause) }, 'checkpoint failed; recovering');
  const alive = () => sandboxAlive(ctx, record);
  const deadline = Date.now() + settleMs;
  try {
    while (await alive()) {
      try {
        await runtime.signal(record.runtimeId, 'SIGUSR1');
        await reconnectEnvd(ctx, record, async () => !(await alive()));
        transition(record, 'running');
        logger.info('the sandbox kept running; pause abandoned');
        return;
      } catch (err) {
        if (!(await alive())) break;
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
      }
    }
    logger.warn('the sandbox stopped after saving itself; restoring it from the saved image');
    await releaseRuntimeAndSlot(ctx, record);
    const undo = new UndoStack();
    try {
      await startRuntime(ctx, record, { restoreFrom: paths.checkpointPartial }, undo);
    } catch (err) {
      await undo.run(logger);
      throw err;
    }
    markRunning(record);
    // In a new slot now.
    await writeSandboxState(record).catch((err: unknown) =>
      logger.error({ err: errorMessage(err) }, 'could not record the restored sandbox'),
    );
  } catch (err) {
    logger.error(
      { err: errorMessage(err) },
      'could not recover from a failed checkpoint; the sandbox is lost',
    );
    const reason = `lost during a failed pause: ${errorMessage(cause)}`;
    await stopAndRelease(ctx, record, 'stopped', () => Promise.resolve(reason)).catch(() => undefined);
  } finally {
    await rm(paths.checkpointPartial, { recursive: true, force: true });
  }
}

/**
 * Whether the sandbox's runtime still runs. By its pid when the agent knows it; without one (the
 * sandbox was being released under us), the runtime's own record decides.
 */
async function sandboxAlive(ctx: SandboxContext, record: SandboxRecord): Promise<boolean> {
  if (record.pid !== undefined) return ctx.deps.pidAlive(record.pid);
  return !(await ctx.deps.runtime.hasExited(record.runtimeId).catch(() => true));
}

async function releaseRuntimeAndSlot(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  record.envd?.close();
  record.envd = undefined;
  await ctx.deps.runtime.destroy(record.runtimeId);
  record.pid = undefined;
  await releaseSlot(ctx.deps, record);
}
