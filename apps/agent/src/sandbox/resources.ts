import { readFile } from 'node:fs/promises';
import {
  allSucceeded,
  Code,
  ConnectError,
  errorMessage,
  failedPrecondition,
  type Logger,
  type UndoStack,
} from '@wrenn/core';
import { ENVD_PORT } from '@wrenn/contracts';
import { slotAddresses, type NetworkSlot } from '../network/addresses.js';
import type { PreparedSlots } from '../network/prepared-slots.js';
import { InstanceNames } from '../instance-names.js';
import type { LifecycleDeps } from './deps.js';
import type { EnvdClient, EnvdInit } from './envd-client.js';
import { guestRuntimeSpec, type EnvdStart } from './guest.js';
import { guardMemory, unguardMemory } from './memory-guard.js';
import type { SandboxRecord } from './record.js';
import { touch, type SandboxRegistry } from './registry.js';
import { transition } from './state.js';
import type { WarmPool } from './warm-pool.js';

/** What every lifecycle operation works with: the host's parts and this host's sandboxes. */
export interface SandboxContext {
  deps: LifecycleDeps;
  registry: SandboxRegistry;
  /** Running sandboxes kept ready per template, for creates to claim (warm-pool.ts). */
  pool?: WarmPool;
  /** Network slots built ahead, for any start to take (network/prepared-slots.ts). */
  preparedSlots?: PreparedSlots;
}

const ENVD_READY_TIMEOUT_MS = 20_000;

/** How the runtime of a sandbox comes up: a cold boot, or a restore from a checkpoint. */
export type Start = { boot: true } | { restoreFrom: string; rekeyFrom?: string };

export type EnvdDefaults = Pick<EnvdInit, 'defaultUser' | 'defaultWorkdir'>;

export interface StartOptions {
  env?: Record<string, string>;
  /** A new sandbox's default user and workdir for envd (a resume keeps what envd held). */
  defaults?: EnvdDefaults;
  signal?: AbortSignal;
  phase?: (name: string) => void;
  /** What the runtime needs on disk first; it runs side by side with the network slot's set-up. */
  prepareDisk?: () => Promise<void>;
}

export function sandboxLogger(ctx: SandboxContext, record: SandboxRecord): Logger {
  return ctx.deps.logger.child({ sandboxId: record.info.id });
}

/**
 * Network slot → runtime (boot or restore) → envd healthy and initialised. Every step registers its
 * undo before it runs, so a failure anywhere rolls back exactly what exists.
 */
export async function startRuntime(
  ctx: SandboxContext,
  record: SandboxRecord,
  start: Start,
  undo: UndoStack,
  { env = {}, defaults = {}, signal, phase = () => undefined, prepareDisk }: StartOptions = {},
): Promise<void> {
  const { config, runtime, network, guest, pidAlive } = ctx.deps;
  const { info, paths } = record;
  const logger = sandboxLogger(ctx, record);
  // A slot an earlier release could not remove is retried first, or this start fails.
  await releaseSlot(ctx.deps, record);
  const prepared = ctx.preparedSlots?.take();
  const slot = prepared ?? newSlot(ctx.deps);
  record.slot = slot;
  undo.push('release network slot', () => releaseSlot(ctx.deps, record));
  // Independent work side by side; all settle before a failure is rethrown, so the undo stack
  // holds every step that ran.
  const envdStart = envdStartOf(ctx, record.baseImage);
  await allSucceeded([
    prepared ? Promise.resolve() : network.prepare(slot),
    prepareDisk ? prepareDisk() : Promise.resolve(),
    envdStart,
  ]);
  // In force before the sandbox can send anything (its slot is activated only after the runtime).
  await network.applyEgress(slot, record.egress);
  phase('prepare');

  signal?.throwIfAborted();
  // Registered before the call: a start that fails halfway can leave runsc state and cgroups, and
  // destroy is idempotent.
  undo.push('destroy runtime sandbox', () => runtime.destroy(record.runtimeId));
  const spec = guestRuntimeSpec(config, paths, slot, info, record.runtimeId, await envdStart);
  const { pid } =
    'boot' in start
      ? await runtime.create(spec, signal)
      : await runtime.restore(spec, start.restoreFrom, signal);
  phase('runtime');
  // Before anything runs in it: past its memory size a process dies, not the sandbox.
  undo.push('unguard memory', () => unguardMemory(ctx, record));
  await guardMemory(ctx, record);
  await network.activate(slot);
  phase('activate');

  const firstToken = 'rekeyFrom' in start && start.rekeyFrom ? start.rekeyFrom : record.accessToken;
  let envd = guest.connect(slot.slotIp, firstToken, logger);
  undo.push('close envd client', () => envd.close());
  const hasExited = async () => !pidAlive(pid) || (await runtime.hasExited(record.runtimeId));
  // A checkpoint keeps envd's listening socket, so a restored envd answers the first poll. One an
  // older agent took with envd quiesced has it closed (refused): that envd listens again on SIGUSR1
  // (a `runsc kill`, ~15–20 ms, paid only then).
  const wake = 'boot' in start ? undefined : () => runtime.signal(record.runtimeId, 'SIGUSR1');
  await envd.waitHealthy(ENVD_READY_TIMEOUT_MS, signal, hasExited, wake).catch(async (err: unknown) => {
    // Whatever the sandbox's init said on its way out is the useful part of the error.
    if (!(await hasExited())) throw err;
    const log = await readFile(paths.runtimeLog, 'utf8').catch(() => '');
    const tail = log.trim().split('\n').slice(-5).join(' | ');
    throw failedPrecondition(
      `sandbox exited while starting from template ${info.template}: ${tail || 'no output'}`,
    );
  });
  // A sandbox restored from a snapshot wakes up with the snapshot's token; it gets its own here. A
  // resume has nothing to tell it (its envd kept the token, variables and defaults it had).
  const hasNews =
    'boot' in start ||
    firstToken !== record.accessToken ||
    Object.keys(env).length > 0 ||
    Object.keys(defaults).length > 0;
  if (hasNews) await envd.init({ envVars: env, accessToken: record.accessToken, ...defaults });
  if (firstToken !== record.accessToken) {
    envd.close();
    envd = guest.connect(slot.slotIp, record.accessToken, logger);
    undo.push('close envd client', () => envd.close());
  }
  // Only now: the start ran on every core (oci-spec.ts).
  await runtime.limitCpu(record.runtimeId, info.vcpus);
  phase('envd');
  record.pid = pid;
  record.envd = envd;
  record.lifetime = new AbortController();
}

/**
 * How envd starts in a sandbox of this image template: the image's template.json says (boot and
 * restore must agree, so it is read from the template every time, never remembered elsewhere).
 */
async function envdStartOf(ctx: SandboxContext, baseImage: string): Promise<EnvdStart> {
  const template = await ctx.deps.templates.resolve(baseImage);
  if (template.kind !== 'image' || template.envdRuntime === 'host') return { runtime: 'host' };
  return { runtime: 'bundled', dir: await ctx.deps.envdRuntime.ensure() };
}

/** Waits for envd of a sandbox that kept running to answer again, and makes it the sandbox's client. */
export async function reconnectEnvd(
  ctx: SandboxContext,
  record: SandboxRecord,
  hasExited: () => Promise<boolean>,
): Promise<void> {
  const { slot, info } = record;
  if (!slot) throw new Error(`sandbox ${info.id} has no network slot`);
  const envd: EnvdClient = ctx.deps.guest.connect(
    slot.slotIp,
    record.accessToken,
    sandboxLogger(ctx, record),
  );
  try {
    await envd.waitHealthy(ENVD_READY_TIMEOUT_MS, undefined, hasExited);
  } catch (err) {
    envd.close();
    throw err;
  }
  record.envd = envd;
}

/** A free index's addresses (its namespace is not built yet). */
export function newSlot({ slots, config }: LifecycleDeps): NetworkSlot {
  return slotAddresses(slots.allocate(), config.slotSubnet.base, new InstanceNames(config.instance));
}

export function markRunning(record: SandboxRecord): void {
  const { info, slot } = record;
  transition(record, 'running');
  info.envdAddress = slot ? `${slot.slotIp}:${ENVD_PORT}` : '';
  info.autoPaused = false;
  info.pausedAt = undefined;
  touch(record);
  record.cpuMark = undefined;
}

/**
 * The one place a network slot is given back. Its index is free again only once its namespace is
 * gone: a namespace that could not be removed keeps the index out of use (reusing it would fail on
 * the leftover), and stays on the record for the next release to retry.
 */
export async function releaseSlot(deps: LifecycleDeps, record: SandboxRecord): Promise<void> {
  const { slot } = record;
  if (!slot) return;
  await removeSlot(deps, slot);
  record.slot = undefined;
}

export async function removeSlot(deps: LifecycleDeps, slot: NetworkSlot): Promise<void> {
  await deps.network.release(slot);
  deps.slots.release(slot.index);
}

/**
 * Frees what a sandbox holds and ends its calls in flight. `keepLayer` (pause): the runtime, slot and
 * mounts go, the disk image and checkpoint stay. Every step runs even if another failed.
 */
export async function releaseResources(
  ctx: SandboxContext,
  record: SandboxRecord,
  why: string,
  opts: { keepLayer: boolean },
): Promise<void> {
  const { runtime, storage } = ctx.deps;
  const { info, paths } = record;
  const logger = sandboxLogger(ctx, record);
  const message = `sandbox ${info.id} ${why === 'paused' ? 'was paused' : `stopped: ${why}`}`;
  record.lifetime.abort(new ConnectError(message, Code.Aborted));
  const failures: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      failures.push(`${what}: ${errorMessage(err)}`);
      logger.error({ err: errorMessage(err), step: what }, 'release step failed');
    }
  };
  await step('memory guard', () => unguardMemory(ctx, record));
  record.envd?.close();
  record.envd = undefined;
  info.envdAddress = '';
  // The slot and the runtime are independent; storage waits for the runtime (its gofer holds files).
  await Promise.all([
    step('network', () => releaseSlot(ctx.deps, record)),
    step('runtime', () => runtime.destroy(record.runtimeId)).then(() =>
      step('storage', () =>
        opts.keepLayer ? storage.unmount(paths, logger) : storage.destroy(paths, logger),
      ),
    ),
  ]);
  record.pid = undefined;
  if (failures.length) {
    throw new ConnectError(`releasing ${info.id} left work undone: ${failures.join('; ')}`, Code.Internal);
  }
  logger.info({ why }, 'sandbox resources released');
}

/** Milliseconds per phase, logged with the result: where the time goes is an operator's question. */
export function phaseTimer() {
  const started = performance.now();
  let mark = started;
  const phases: Record<string, number> = {};
  return {
    phases,
    phase: (name: string) => {
      const now = performance.now();
      phases[name] = Math.round(now - mark);
      mark = now;
    },
    total: () => Math.round(performance.now() - started),
  };
}

export function asConnectError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return new ConnectError(`${what}: ${err.rawMessage}`, err.code);
  return new ConnectError(`${what}: ${errorMessage(err)}`, Code.Internal, undefined, undefined, err);
}
