import { readdir, rm } from 'node:fs/promises';
import type { Logger } from '@wrenn/core';
import type { RuntimeDriver } from '../runtime/driver.js';
import type { SlotNetwork } from '../network/slot-network.js';
import type { HostFirewall } from '../network/host-firewall.js';
import type { DataLayout } from '../storage/layout.js';
import type { TemplateStore } from '../storage/templates.js';
import { mountsBelow, unmountAllBelow } from '../storage/rootfs.js';

/** What sandboxes this agent takes over still hold on the host (sandbox/adoption.ts decides). */
export interface Kept {
  /** Runtime sandboxes (runsc containers, their processes and cgroups) that keep running. */
  runtimeIds: ReadonlySet<string>;
  /** Network slots (namespace, host link) of sandboxes that keep running. */
  slots: ReadonlySet<number>;
  /** Directories under `sandboxes/` whose mounts stay (sandboxes that keep running). */
  mountedDirs: ReadonlySet<string>;
  /** Directories under `sandboxes/` that stay (running and paused sandboxes). */
  dirs: ReadonlySet<string>;
}

export const KEEP_NOTHING: Kept = {
  runtimeIds: new Set(),
  slots: new Set(),
  mountedDirs: new Set(),
  dirs: new Set(),
};

/**
 * Start-up cleanup: whatever a predecessor that crashed (or was killed) left on this host and no
 * adopted sandbox owns goes, in dependency order: runtime processes first (they hold mounts and
 * namespaces), then the network slots, mounts, files and firewall rules. What `kept` names belongs
 * to sandboxes this agent takes over (running ones where they run, paused ones on disk).
 */
export async function removeLeftovers(
  deps: {
    runtime: RuntimeDriver;
    network: SlotNetwork;
    firewall: HostFirewall;
    layout: DataLayout;
    templates: TemplateStore;
    logger: Logger;
  },
  kept: Kept = KEEP_NOTHING,
): Promise<void> {
  const { runtime, network, firewall, layout, templates, logger } = deps;
  await runtime.removeLeftovers(kept.runtimeIds);
  await network.removeLeftovers(kept.slots);
  const keptMount = (p: string) =>
    [...kept.mountedDirs].some(
      (dir) => p === layout.sandboxDir(dir) || p.startsWith(`${layout.sandboxDir(dir)}/`),
    );
  const mounts = (await mountsBelow(layout.sandboxesDir)).filter((p) => !keptMount(p));
  for (const target of mounts) {
    await unmountAllBelow(target, logger).catch((err: unknown) =>
      logger.warn({ err, target }, 'could not unmount a leftover mount'),
    );
  }
  const dirs: string[] = [];
  for (const dir of await readdir(layout.sandboxesDir).catch(() => [] as string[])) {
    if (kept.dirs.has(dir)) continue;
    dirs.push(dir);
    await rm(layout.sandboxDir(dir), { recursive: true, force: true });
  }
  const staging = await templates.removeStaging();
  // Sandboxes half-way in from another host: the control plane still has them where they came from.
  const imports = await readdir(layout.importsDir).catch(() => [] as string[]);
  await rm(layout.importsDir, { recursive: true, force: true });
  staging.push(...imports.map((entry) => `imports/${entry}`));
  // With sandboxes adopted, the rules stay until `HostFirewall.install` replaces them (guarded).
  if (!kept.runtimeIds.size) await firewall.remove();
  if (mounts.length || dirs.length || staging.length)
    logger.warn({ mounts: mounts.length, dirs, staging }, 'removed leftover sandbox and template files');
}

/** Mounts runsc keeps in its state dir for the agent's lifetime (the gofers' shared empty netns). */
export async function releaseRuntimeState(layout: DataLayout, logger: Logger): Promise<void> {
  await unmountAllBelow(layout.runscRoot, logger).catch((err: unknown) =>
    logger.warn({ err }, 'could not unmount runsc state'),
  );
}
