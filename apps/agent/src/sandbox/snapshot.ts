import { link, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, failedPrecondition } from '@wrenn/core';
import type { SnapshotMeta, Template } from '../storage/templates.js';
import { checkpointToPaused, restorePaused } from './pause-resume.js';
import { journaled } from './journal.js';
import { writePausedState, type SandboxRecord } from './record.js';
import { sandboxLogger, type SandboxContext } from './resources.js';
import { transition } from './state.js';

/**
 * A snapshot template: the sandbox is checkpointed (briefly paused), its checkpoint and disk layer
 * become the template, and it is restored again. A paused sandbox is snapshotted as it is. `signal`
 * stops the copy (the staged template is removed); a sandbox paused for it is resumed either way.
 */
export async function createSnapshot(
  ctx: SandboxContext,
  id: string,
  name: string,
  signal?: AbortSignal,
): Promise<Template> {
  const record = ctx.registry.find(id);
  const { templates } = ctx.deps;
  return ctx.registry.serially(record, async () => {
    signal?.throwIfAborted();
    await templates.assertNameFree(name);
    const wasRunning = record.state === 'running';
    return journaled(record.paths, { op: 'snapshot', template: name, resumeAfter: wasRunning }, () =>
      snapshotSerially(ctx, record, name, wasRunning, signal),
    );
  });
}

async function snapshotSerially(
  ctx: SandboxContext,
  record: SandboxRecord,
  name: string,
  wasRunning: boolean,
  signal?: AbortSignal,
): Promise<Template> {
  const { templates, storage } = ctx.deps;
  const id = record.info.id;
  if (wasRunning) {
    // Durable like any pause: an agent that dies during the copy finds it paused on disk, and (the
    // intent's `resumeAfter`) resumes it.
    (await checkpointToPaused(ctx, record, { auto: false }))();
  } else if (record.state !== 'paused') {
    throw failedPrecondition(
      `sandbox ${id} is ${record.info.status}; only a running or paused sandbox can be snapshotted`,
    );
  }
  // The layer is copied only once it is unmounted (a pause may still be tearing down).
  await record.teardown;
  try {
    return await templates.stage(name, async (dir) => {
      const checkpoint = path.join(dir, 'checkpoint');
      await mkdir(checkpoint);
      // The image files are never written again: links cost nothing and outlive the sandbox's.
      for (const file of await readdir(record.paths.checkpoint)) {
        await link(path.join(record.paths.checkpoint, file), path.join(checkpoint, file));
      }
      signal?.throwIfAborted();
      await storage.copyDiskImage(record.paths.diskImage, path.join(dir, 'disk.ext4'), signal);
      return snapshotMeta(record, name);
    });
  } finally {
    if (wasRunning) await resumeAfterSnapshot(ctx, record);
  }
}

function snapshotMeta(record: SandboxRecord, name: string): SnapshotMeta {
  const { info } = record;
  return {
    kind: 'snapshot',
    name,
    baseImage: record.baseImage,
    vcpus: info.vcpus,
    memoryMb: info.memoryMb,
    diskMb: info.diskMb,
    createdAt: new Date().toISOString(),
    sourceSandbox: info.id,
    envdToken: record.accessToken,
  };
}

async function resumeAfterSnapshot(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  try {
    await restorePaused(ctx, record);
  } catch (err) {
    // It stays paused (a failed resume changes nothing); the reason says why, here and on disk.
    record.info.statusReason = `paused: resuming after the snapshot failed (${errorMessage(err)}); resume to retry`;
    await writePausedState(record).catch(() => undefined);
    throw err;
  }
}

/**
 * A new image template from the sandbox's root filesystem (its template and its changes, merged
 * into one plain directory tree). A running sandbox is frozen while it is copied. `signal` stops the
 * copy: the staged template is removed and the sandbox thawed.
 */
export async function flattenRootfs(
  ctx: SandboxContext,
  id: string,
  name: string,
  signal?: AbortSignal,
): Promise<Template> {
  const record = ctx.registry.find(id);
  const { templates } = ctx.deps;
  return ctx.registry.serially(record, async () => {
    signal?.throwIfAborted();
    await templates.assertNameFree(name);
    return journaled(record.paths, { op: 'flatten', template: name }, () =>
      flattenSerially(ctx, record, name, signal),
    );
  });
}

async function flattenSerially(
  ctx: SandboxContext,
  record: SandboxRecord,
  name: string,
  signal?: AbortSignal,
): Promise<Template> {
  const { templates, runtime, storage, guest } = ctx.deps;
  const id = record.info.id;
  const { paths } = record;
  const logger = sandboxLogger(ctx, record);
  const stage = () =>
    templates.stage(name, async (dir) => {
      await mkdir(path.join(dir, 'rootfs'));
      await storage.copyTree(paths.rootfs, path.join(dir, 'rootfs'), signal);
      return { flattenedFrom: id };
    });
  if (record.state === 'paused') {
    await record.teardown;
    const lower = await templates.imageRootfs(record.baseImage);
    try {
      // Inside the try: a mount that fails halfway leaves the disk mounted without the overlay.
      await storage.mount(paths, lower);
      return await stage();
    } finally {
      await storage.unmount(paths, logger);
    }
  }
  const { envd, done } = ctx.registry.connection(id);
  // gVisor may hold written data in its own cache: flush it to the layer before copying.
  await guest.sync(envd, signal).finally(done);
  transition(record, 'flattening');
  try {
    await runtime.freeze(record.runtimeId);
    return await stage();
  } finally {
    await runtime
      .thaw(record.runtimeId)
      .catch((err: unknown) => logger.error({ err }, 'thaw after flatten failed'));
    transition(record, 'running');
  }
}

/**
 * Deletes a template this agent made, unless a sandbox or another template still needs it. Its warm
 * pool goes with it (pooled sandboxes are no sandbox's: they do not keep a template alive).
 */
export async function deleteTemplate(ctx: SandboxContext, name: string): Promise<void> {
  const { templates } = ctx.deps;
  const template = await templates.resolve(name, 'name');
  const inUse = () => {
    if (ctx.registry.snapshotInUse(name)) {
      throw failedPrecondition(
        `template ${name} is in use: sandboxes are being created from it, or another host is copying it`,
      );
    }
  };
  const users = ctx.registry
    .records()
    .filter((r) => r.baseImage === name)
    .map((r) => r.info.id);
  if (template.kind === 'image' && users.length) {
    throw failedPrecondition(`template ${name} is in use by sandbox(es) ${users.join(', ')}`);
  }
  const dependents = (await templates.all())
    .filter((t) => t.kind === 'snapshot' && t.meta.baseImage === name)
    .map((t) => t.name);
  if (dependents.length)
    throw failedPrecondition(`template ${name} is the base of snapshot(s) ${dependents.join(', ')}`);
  // A refill of this template in flight counted as a use: it is cut short here.
  await ctx.pool?.forget(name);
  inUse();
  await templates.delete(name);
}
