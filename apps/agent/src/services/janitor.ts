import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import type { Logger } from '@wrenn/core';
import type { RuntimeDriver } from '../runtime/driver.js';
import type { SlotNetwork } from '../network/slot-network.js';
import type { HostFirewall } from '../network/host-firewall.js';
import { sandboxPaths, type DataLayout } from '../storage/layout.js';
import type { TemplateStore } from '../storage/templates.js';
import { readPausedState } from '../sandbox/record.js';
import { mountsBelow, unmountAllBelow } from '../storage/rootfs.js';

/**
 * Start-up cleanup: whatever a predecessor that crashed (or was killed) left on this host goes, in
 * dependency order: runtime processes first (they hold mounts and namespaces), then the network
 * slots, mounts, files and firewall rules. Paused sandboxes (a complete checkpoint and their state
 * file) are kept: pause means "on disk until resumed", whatever happens to the agent meanwhile.
 */
export async function removeLeftovers(deps: {
  runtime: RuntimeDriver;
  network: SlotNetwork;
  firewall: HostFirewall;
  layout: DataLayout;
  templates: TemplateStore;
  logger: Logger;
}): Promise<void> {
  const { runtime, network, firewall, layout, templates, logger } = deps;
  await runtime.removeLeftovers();
  await network.removeLeftovers();
  const mounts = await mountsBelow(layout.sandboxesDir);
  await unmountAllBelow(layout.sandboxesDir, logger).catch((err: unknown) =>
    logger.warn({ err }, 'could not unmount every leftover mount'),
  );
  // A paused sandbox is data, not a leftover: its directory stays for the manager to adopt.
  const dirs: string[] = [];
  for (const id of await readdir(layout.sandboxesDir).catch(() => [] as string[])) {
    const paths = sandboxPaths(layout, id);
    if ((await readPausedState(paths).catch(() => undefined)) && existsSync(paths.checkpoint)) {
      await rm(paths.checkpointPartial, { recursive: true, force: true });
      continue;
    }
    dirs.push(id);
    await rm(paths.dir, { recursive: true, force: true });
  }
  const staging = await templates.removeStaging();
  // Sandboxes half-way in from another host: the control plane still has them where they came from.
  const imports = await readdir(layout.importsDir).catch(() => [] as string[]);
  await rm(layout.importsDir, { recursive: true, force: true });
  staging.push(...imports.map((entry) => `imports/${entry}`));
  await firewall.remove();
  if (mounts.length || dirs.length || staging.length)
    logger.warn({ mounts: mounts.length, dirs, staging }, 'removed leftover sandbox and template files');
}

/** Mounts runsc keeps in its state dir for the agent's lifetime (the gofers' shared empty netns). */
export async function releaseRuntimeState(layout: DataLayout, logger: Logger): Promise<void> {
  await unmountAllBelow(layout.runscRoot, logger).catch((err: unknown) =>
    logger.warn({ err }, 'could not unmount runsc state'),
  );
}
