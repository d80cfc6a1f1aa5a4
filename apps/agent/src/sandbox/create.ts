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
import {
  newRecord,
  writeSandboxState,
  type CreateSandboxParams,
  type SandboxInfo,
  type SandboxRecord,
} from './record.js';
import {
  asConnectError,
  markRunning,
  phaseTimer,
  releaseResources,
  sandboxLogger,
  startRuntime,
  type SandboxContext,
  type EnvdDefaults,
  type Start,
} from './resources.js';
import { transition } from './state.js';
import { poolRuntimeId, type PoolSizes } from './warm-pool.js';

export const SIZE_DEFAULTS = { vcpus: 1, memoryMb: 512, diskMb: 4096 };

/**
 * A new sandbox: claimed from the template's warm pool when it has a ready one of these sizes,
 * otherwise made from an image (boot) or a snapshot (restore). A failure leaves nothing behind.
 */
export async function createSandbox(
  ctx: SandboxContext,
  params: CreateSandboxParams,
  signal?: AbortSignal,
): Promise<SandboxInfo> {
  const { config, templates } = ctx.deps;
  const { registry, pool } = ctx;
  const template = await templates.resolve(params.template);
  const sizes = sizesFor(template, params);
  if (registry.size >= config.maxSandboxes) {
    throw resourceExhausted(`this host runs its maximum of ${config.maxSandboxes} sandboxes`);
  }
  const id = params.id || randomId(20);
  if (registry.has(id))
    throw new ConnectError(`sandbox ${JSON.stringify(id)} already exists`, Code.AlreadyExists);
  const member = pool?.take(params.template, sizes);
  if (member) {
    const claimed = await claim(ctx, member, id, params);
    if (claimed) return claimed;
  }
  // A cold start: the pool's refill gives way, and a pool member gives up its slot if none is left.
  const done = pool?.demand();
  try {
    if (pool && registry.size + pool.held >= config.maxSandboxes) await pool.evictOne();
    if (registry.has(id))
      throw new ConnectError(`sandbox ${JSON.stringify(id)} already exists`, Code.AlreadyExists);
    const record = newRecord(
      'creating',
      newInfo(id, params, sizes),
      sandboxPaths(ctx.deps.layout, id),
      baseImageOf(template),
      randomBytes(24).toString('hex'),
    );
    record.egress = params.egress;
    registry.add(record);
    try {
      await registry.serially(record, async () => {
        await buildFrom(ctx, record, template, params.env, signal, envdDefaults(params));
        markRunning(record);
        await recordRunning(ctx, record);
      });
      return { ...record.info };
    } catch (err) {
      transition(record, 'destroyed');
      registry.remove(id);
      throw err;
    }
  } finally {
    done?.();
  }
}

/**
 * A pooled sandbox becomes the requested one: the id, metadata and timeout are the request's, envd
 * takes the request's env vars and a fresh access token (authenticated with the pooled one's), and
 * its inactivity timer starts now. Undefined when envd refused (the member is destroyed and counted;
 * the caller starts a sandbox the usual way).
 */
async function claim(
  ctx: SandboxContext,
  record: SandboxRecord,
  id: string,
  params: CreateSandboxParams,
): Promise<SandboxInfo | undefined> {
  const { registry, pool } = ctx;
  const pooledId = record.info.id;
  const timer = phaseTimer();
  record.info = { ...newInfo(id, params, record.info), template: params.template };
  const pooledToken = record.accessToken;
  record.accessToken = randomBytes(24).toString('hex');
  // Registered at once: the id is taken from here on (its calls are refused until it is running).
  registry.add(record);
  const logger = sandboxLogger(ctx, record);
  try {
    await registry.serially(record, async () => {
      const { slot, envd } = record;
      if (!slot || !envd) throw new Error('the pooled sandbox has no network slot or envd client');
      record.egress = params.egress;
      await ctx.deps.network.applyEgress(slot, record.egress);
      await envd.init({ envVars: params.env, accessToken: record.accessToken, ...envdDefaults(params) });
      envd.close();
      record.envd = ctx.deps.guest.connect(slot.slotIp, record.accessToken, logger);
      markRunning(record);
      await recordRunning(ctx, record);
    });
  } catch (err) {
    registry.remove(id);
    logger.warn({ err: errorMessage(err), pooledId }, 'claiming a pooled sandbox failed; starting one');
    pool?.claimFailed(params.template, err);
    record.accessToken = pooledToken;
    await destroyPoolMember(ctx, record).catch((e: unknown) =>
      logger.error({ err: errorMessage(e) }, 'could not destroy the pooled sandbox'),
    );
    return undefined;
  }
  logger.info(
    { ms: timer.total(), template: params.template, runtimeId: record.runtimeId, slot: record.slot?.index },
    'sandbox claimed from the warm pool',
  );
  return { ...record.info };
}

/** A running sandbox of `templateName` for the warm pool: not registered, no identity yet. */
export async function makePoolMember(
  ctx: SandboxContext,
  templateName: string,
  signal: AbortSignal,
): Promise<{ record: SandboxRecord; sizes: PoolSizes }> {
  const template = await ctx.deps.templates.resolve(templateName);
  // No identity yet: the claim gives it the request's.
  const params: CreateSandboxParams = { template: templateName, env: {}, metadata: {}, timeoutSec: 0 };
  const sizes = sizesFor(template, params);
  const runtimeId = poolRuntimeId();
  const record = newRecord(
    'creating',
    newInfo(runtimeId, params, sizes),
    sandboxPaths(ctx.deps.layout, runtimeId),
    baseImageOf(template),
    randomBytes(24).toString('hex'),
  );
  await buildFrom(ctx, record, template, {}, signal);
  try {
    const { envd } = record;
    if (envd) await ctx.deps.guest.warmUp(envd, signal);
  } catch (err) {
    await destroyPoolMember(ctx, record).catch(() => undefined);
    throw err;
  }
  return { record, sizes };
}

/** Frees what a pooled (never claimed, or failed to claim) sandbox holds. */
export async function destroyPoolMember(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  await releaseResources(ctx, record, 'removed from the warm pool', { keepLayer: false });
  transition(record, 'destroyed');
}

/**
 * The sandbox's record on disk, which an agent that restarts adopts it by. Without it the sandbox
 * still runs, but does not outlive this agent (the next one's janitor removes it): logged, not fatal.
 */
export async function recordRunning(ctx: SandboxContext, record: SandboxRecord): Promise<void> {
  await writeSandboxState(record).catch((err: unknown) =>
    sandboxLogger(ctx, record).error(
      { err: errorMessage(err) },
      'could not record the sandbox on disk; it will not survive an agent restart',
    ),
  );
}

function newInfo(id: string, params: CreateSandboxParams, sizes: PoolSizes): SandboxInfo {
  const now = new Date();
  return {
    id,
    template: params.template,
    status: 'pending',
    vcpus: sizes.vcpus,
    memoryMb: sizes.memoryMb,
    diskMb: sizes.diskMb,
    metadata: params.metadata,
    createdAt: now,
    envdAddress: '',
    statusReason: '',
    timeoutSec: params.timeoutSec,
    autoPaused: false,
    lastActiveAt: now,
  };
}

function baseImageOf(template: Template): string {
  return template.kind === 'snapshot' ? template.meta.baseImage : template.name;
}

/** What envd's commands default to, as `/init` takes it (only what the request set). */
function envdDefaults(params: CreateSandboxParams): EnvdDefaults {
  return {
    ...(params.defaultUser ? { defaultUser: params.defaultUser } : {}),
    ...(params.defaultWorkdir ? { defaultWorkdir: params.defaultWorkdir } : {}),
  };
}

function buildFrom(
  ctx: SandboxContext,
  record: SandboxRecord,
  template: Template,
  env: Record<string, string>,
  signal?: AbortSignal,
  defaults: EnvdDefaults = {},
): Promise<void> {
  return template.kind === 'snapshot'
    ? ctx.registry.withSnapshotInUse(template.name, () => build(ctx, record, template, env, signal, defaults))
    : build(ctx, record, template, env, signal, defaults);
}

/** Starts the sandbox's runtime; it is left `creating` with envd initialised (the caller marks it running). */
async function build(
  ctx: SandboxContext,
  record: SandboxRecord,
  template: Template,
  env: Record<string, string>,
  signal?: AbortSignal,
  defaults: EnvdDefaults = {},
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
    await startRuntime(ctx, record, start, undo, { env, defaults, signal, phase: timer.phase, prepareDisk });
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
