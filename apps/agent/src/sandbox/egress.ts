import { failedPrecondition, type EgressPolicy } from '@wrenn/core';
import { writeSandboxState, type SandboxRecord } from './record.js';
import type { SandboxContext } from './resources.js';

/**
 * Makes `egress` the sandbox's policy: in force in its slot before this returns when it runs, kept
 * for its resume when it is paused, and recorded with it either way. A policy that cannot be applied
 * leaves the old one in force (re-applied) and the call fails.
 */
export async function setEgress(
  ctx: SandboxContext,
  record: SandboxRecord,
  egress: EgressPolicy | undefined,
): Promise<void> {
  await record.teardown;
  const { slot, state } = record;
  if (state === 'running' && slot) {
    try {
      await ctx.deps.network.applyEgress(slot, egress);
    } catch (err) {
      await ctx.deps.network.applyEgress(slot, record.egress, true).catch(() => undefined);
      throw err;
    }
  } else if (state !== 'paused') {
    throw failedPrecondition(`sandbox ${record.info.id} is ${record.info.status}`);
  }
  record.egress = egress;
  await writeSandboxState(record);
}

/** UpdateNetwork: one at a time with the sandbox's other state changes (a pause, a resume). */
export function updateNetwork(
  ctx: SandboxContext,
  id: string,
  egress: EgressPolicy | undefined,
): Promise<void> {
  const record = ctx.registry.find(id);
  return ctx.registry.serially(record, () => setEgress(ctx, record, egress));
}
