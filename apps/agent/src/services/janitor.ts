import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '@wrenn/core';
import type { RuntimeDriver } from '../runtime/driver.js';
import type { SlotNetwork } from '../network/slot-network.js';
import type { HostFirewall } from '../network/host-firewall.js';
import type { DataLayout } from '../storage/layout.js';
import { mountsBelow, unmountAllBelow } from '../storage/rootfs.js';

/**
 * Start-up cleanup: whatever a predecessor that crashed (or was killed) left on this host goes, in
 * dependency order: runtime processes first (they hold mounts and namespaces), then the network
 * slots, mounts, files and firewall rules.
 */
export async function removeLeftovers(deps: {
  runtime: RuntimeDriver;
  network: SlotNetwork;
  firewall: HostFirewall;
  layout: DataLayout;
  logger: Logger;
}): Promise<void> {
  const { runtime, network, firewall, layout, logger } = deps;
  await runtime.removeLeftovers();
  await network.removeLeftovers();
  const mounts = await mountsBelow(layout.sandboxesDir);
  await unmountAllBelow(layout.sandboxesDir, logger).catch((err: unknown) =>
    logger.warn({ err }, 'could not unmount every leftover mount'),
  );
  const dirs = await readdir(layout.sandboxesDir).catch(() => [] as string[]);
  for (const dir of dirs) await rm(path.join(layout.sandboxesDir, dir), { recursive: true, force: true });
  await firewall.remove();
  if (mounts.length || dirs.length)
    logger.warn({ mounts: mounts.length, dirs }, 'removed leftover sandbox files');
}

/** Mounts runsc keeps in its state dir for the agent's lifetime (the gofers' shared empty netns). */
export async function releaseRuntimeState(layout: DataLayout, logger: Logger): Promise<void> {
  await unmountAllBelow(layout.runscRoot, logger).catch((err: unknown) =>
    logger.warn({ err }, 'could not unmount runsc state'),
  );
}
