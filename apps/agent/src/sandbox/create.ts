import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import {
  Code,
  ConnectError,
  errorMessage,
  invalidArgument,
  randomId,
  resourceExhausted,
  UndoStack,
} from '@wrenn/core';
import { sandboxPaths, type SandboxPaths } from '../storage/layout.js';
import type { Template } from '../storage/templates.js';
import { newRecord, type CreateSandboxParams, type SandboxInfo, type SandboxRecord } from './record.js';
import {
  asConnectError,
  markRunning,
  phaseTimer,
  sandboxLogger,
  startRuntime,
  type SandboxContext,
  type Start,
} from './resources.js';
import { transition } from './state.js';

export const SIZE_DEFAULTS = { vcpus: 1, memoryMb: 512, diskMb: 4096 };

/** A new sandbox from an image (boot) or a snapshot (restore). A failure leaves nothing behind. */
export async function createSandbox(
  ctx: SandboxContext,
  params: CreateSandboxParams,
  signal?: AbortSignal,
): Promise<SandboxInfo> {
  const { config, templates } = ctx.deps;
  const { registry } = ctx;
  const template = await templates.resolve(params.template);
  const sizes = sizesFor(template, params);
  const baseImage = template.kind === 'snapshot' ? template.meta.baseImage : template.name;
  if (registry.size >= config.maxSandboxes) {
    throw resourceExhausted(`this host runs its maximum of ${config.maxSandboxes} sandboxes`);
  }
  const id = params.id || randomId(20);
  if (registry.has(id))
    throw new ConnectError(`sandbox ${JSON.stringify(id)} already exists`, Code.AlreadyExists);
  const now = new Date();
  const record = newRecord(
    'creating',
    {
      id,
      template: params.template,
      status: 'pending',
      ...sizes,
      metadata: params.metadata,
      createdAt: now,
      envdAddress: '',
      statusReason: '',
      timeoutSec: params.timeoutSec,
      autoPaused: false,
      lastActiveAt: now,
    },
    sandboxPaths(ctx.deps.layout, id),
    baseImage,
    randomBytes(24).toString('hex'),
  );
  registry.add(record);
  try {
    await registry.serially(record, () =>
      template.kind === 'snapshot'
        ? registry.withSnapshotInUse(template.name, () => build(ctx, record, template, params.env, signal))
        : build(ctx, record, template, params.env, signal),
    );
    return { ...record.info };
  } catch (err) {
    transition(record, 'destroyed');
    registry.remove(id);
    throw err;
  }
}

async function build(
  ctx: SandboxContext,
  record: SandboxRecord,
  template: Template,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<void> {
  const { info, paths } = record;
  const { storage, templates } = ctx.deps;
  const logger = sandboxLogger(ctx, record);
  const undo = new UndoStack();
  const timer = phaseTimer();
  try {
    await mkdir(paths.dir, { recursive: true });
    undo.push('remove sandbox dir', () => storage.destroy(paths, logger));
    await writeGuestFiles(ctx, paths);
    const [start, prepareDisk]: [Start, () => Promise<void>] =
      template.kind === 'snapshot'
        ? [
            { restoreFrom: template.checkpoint, rekeyFrom: template.meta.envdToken },
            async () => {
              await storage.copyDiskImage(template.diskImage, paths.diskImage);
              await storage.mount(paths, await templates.imageRootfs(template.meta.baseImage));
            },
          ]
        : [{ boot: true }, () => storage.create(paths, template.rootfs, info.diskMb)];
    await startRuntime(ctx, record, start, undo, { env, signal, phase: timer.phase, prepareDisk });
    markRunning(record);
    logger.info(
      { ms: timer.total(), phases: timer.phases, slot: record.slot?.index, template: info.template },
      template.kind === 'snapshot' ? 'sandbox restored from snapshot' : 'sandbox created',
    );
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'sandbox creation failed; rolling back');
    await undo.run(logger);
    throw asConnectError(err, 'create sandbox');
  }
}

async function writeGuestFiles(ctx: SandboxContext, paths: SandboxPaths): Promise<void> {
  const nameservers = ctx.deps.config.nameservers.map((ns) => `nameserver ${ns}\n`).join('');
  await writeFile(paths.resolvConf, nameservers || '# no nameservers configured for sandboxes\n');
  await writeFile(paths.hosts, '127.0.0.1\tlocalhost wrenn\n::1\tlocalhost ip6-localhost ip6-loopback\n');
}

/** A snapshot fixes the sizes (its memory image was taken with them); an image takes the request's. */
function sizesFor(
  template: Template,
  params: CreateSandboxParams,
): { vcpus: number; memoryMb: number; diskMb: number } {
  if (template.kind === 'image') {
    return {
      vcpus: params.vcpus ?? SIZE_DEFAULTS.vcpus,
      memoryMb: params.memoryMb ?? SIZE_DEFAULTS.memoryMb,
      diskMb: params.diskMb ?? SIZE_DEFAULTS.diskMb,
    };
  }
  const { meta } = template;
  const fixed = [
    ['vcpus', params.vcpus, meta.vcpus],
    ['memory_mb', params.memoryMb, meta.memoryMb],
    ['disk_mb', params.diskMb, meta.diskMb],
  ] as const;
  for (const [field, asked, fixedValue] of fixed) {
    if (asked !== undefined && asked !== fixedValue) {
      throw invalidArgument(
        field,
        `snapshot ${meta.name} fixes ${field} at ${fixedValue}; omit it or pass ${fixedValue}, got ${asked}`,
      );
    }
  }
  return { vcpus: meta.vcpus, memoryMb: meta.memoryMb, diskMb: meta.diskMb };
}
