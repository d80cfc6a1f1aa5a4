import { link, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import path from 'node:path';
import {
  allSucceeded,
  Code,
  ConnectError,
  errorMessage,
  exec,
  failedPrecondition,
  invalidArgument,
  notFound,
  randomId,
  resourceExhausted,
  UndoStack,
  type Logger,
} from '@wrenn/core';
import { ENVD_PORT } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import type { RuntimeDriver } from '../runtime/driver.js';
import { slotAddresses } from '../network/addresses.js';
import type { SlotAllocator } from '../network/slot-allocator.js';
import type { SlotNetwork } from '../network/slot-network.js';
import { sandboxPaths, type DataLayout, type SandboxPaths } from '../storage/layout.js';
import { copyDiskImage, createRootfs, destroyRootfs, mountRootfs, unmountRootfs } from '../storage/rootfs.js';
import type { SnapshotMeta, Template, TemplateStore } from '../storage/templates.js';
import { takeSample } from '../metrics/sampler.js';
import type { MetricSample, MetricsRange } from '../metrics/tiers.js';
import { runCommand } from './commands.js';
import { EnvdClient } from './envd-client.js';
import { guestRuntimeSpec } from './guest.js';
import {
  newRecord,
  readPausedState,
  writePausedState,
  type CreateSandboxParams,
  type SandboxInfo,
  type SandboxRecord,
} from './record.js';

export type { CreateSandboxParams, SandboxInfo, SandboxStatus } from './record.js';

export interface SandboxManagerDeps {
  config: AgentConfig;
  layout: DataLayout;
  templates: TemplateStore;
  runtime: RuntimeDriver;
  network: SlotNetwork;
  slots: SlotAllocator;
  logger: Logger;
}

export const SIZE_DEFAULTS = { vcpus: 1, memoryMb: 512, diskMb: 4096 };
const ENVD_READY_TIMEOUT_MS = 20_000;
// envd stops listening within milliseconds of SIGUSR2; past this the checkpoint goes ahead anyway
// (a current runsc saves a listening socket fine, the quiesce is for older ones).
const QUIESCE_WAIT_MS = 1000;
// How long a sandbox may take to finish a save that its runsc gave up on (it writes the whole memory).
const CHECKPOINT_SETTLE_MS = 300_000;

/** How the runtime of a sandbox comes up: a cold boot, or a restore from a checkpoint. */
type Start = { boot: true } | { restoreFrom: string; rekeyFrom?: string };

interface StartOptions {
  env?: Record<string, string>;
  signal?: AbortSignal;
  phase?: (name: string) => void;
  /** What the runtime needs on disk first; it runs side by side with the network slot's set-up. */
  prepareDisk?: () => Promise<void>;
}

/** Owns the sandboxes of this host: their state machine and every resource each one holds. */
export class SandboxManager {
  private readonly sandboxes = new Map<string, SandboxRecord>();
  /** Creates restoring from each snapshot right now: a snapshot in use cannot be deleted. */
  private readonly snapshotUsers = new Map<string, number>();

  constructor(private readonly deps: SandboxManagerDeps) {}

  // ---------------------------------------------------------------------------------------------
  // Create and destroy

  async create(params: CreateSandboxParams, signal?: AbortSignal): Promise<SandboxInfo> {
    const { config, templates } = this.deps;
    const template = await templates.resolve(params.template);
    const sizes = sizesFor(template, params);
    const baseImage = template.kind === 'snapshot' ? template.meta.baseImage : template.name;
    if (this.sandboxes.size >= config.maxSandboxes) {
      throw resourceExhausted(`this host runs its maximum of ${config.maxSandboxes} sandboxes`);
    }
    const id = params.id || randomId(20);
    if (this.sandboxes.has(id))
      throw new ConnectError(`sandbox ${JSON.stringify(id)} already exists`, Code.AlreadyExists);
    const now = new Date();
    const record = newRecord(
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
      sandboxPaths(this.deps.layout, id),
      baseImage,
      randomBytes(24).toString('hex'),
    );
    this.sandboxes.set(id, record);
    try {
      await this.serially(record, () =>
        template.kind === 'snapshot'
          ? this.withSnapshotInUse(template.name, () => this.build(record, template, params.env, signal))
          : this.build(record, template, params.env, signal),
      );
      return { ...record.info };
    } catch (err) {
      this.sandboxes.delete(id);
      throw err;
    }
  }

  private async build(
    record: SandboxRecord,
    template: Template,
    env: Record<string, string>,
    signal?: AbortSignal,
  ) {
    const { info, paths } = record;
    const logger = this.logger(record);
    const undo = new UndoStack();
    const timer = phaseTimer();
    try {
      await mkdir(paths.dir, { recursive: true });
      undo.push('remove sandbox dir', () => destroyRootfs(paths, logger));
      await this.writeGuestFiles(paths);
      const { templates } = this.deps;
      const [start, prepareDisk]: [Start, () => Promise<void>] =
        template.kind === 'snapshot'
          ? [
              { restoreFrom: template.checkpoint, rekeyFrom: template.meta.envdToken },
              async () => {
                await copyDiskImage(template.diskImage, paths.diskImage);
                await mountRootfs(paths, await templates.imageRootfs(template.meta.baseImage));
              },
            ]
          : [{ boot: true }, () => createRootfs(paths, template.rootfs, info.diskMb)];
      await this.startRuntime(record, start, undo, { env, signal, phase: timer.phase, prepareDisk });
      this.markRunning(record);
      logger.info(
        { ms: timer.total(), phases: timer.phases, slot: record.slot?.index, template: info.template },
        template.kind === 'snapshot' ? 'sandbox restored from snapshot' : 'sandbox created',
      );
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'sandbox creation failed; rolling back');
      info.status = 'error';
      await undo.run(logger);
      throw asConnectError(err, 'create sandbox');
    }
  }

  /**
   * Network slot → runtime (boot or restore) → envd healthy and initialised. Every step registers its
   * undo before it runs, so a failure anywhere rolls back exactly what exists.
   */
  private async startRuntime(
    record: SandboxRecord,
    start: Start,
    undo: UndoStack,
    { env = {}, signal, phase = () => undefined, prepareDisk }: StartOptions = {},
  ): Promise<void> {
    const { config, runtime, network, slots } = this.deps;
    const { info, paths } = record;
    const slot = slotAddresses(slots.allocate(), config.slotSubnet.base);
    undo.push('release slot index', () => slots.release(slot.index));
    undo.push('remove network slot', () => network.release(slot));
    // Independent work side by side; both settle before a failure is rethrown, so the undo stack
    // holds every step that ran.
    await allSucceeded([network.prepare(slot), prepareDisk ? prepareDisk() : Promise.resolve()]);
    phase('prepare');

    signal?.throwIfAborted();
    // Registered before the call: a start that fails halfway can leave runsc state and cgroups, and
    // destroy is idempotent.
    undo.push('destroy runtime sandbox', () => runtime.destroy(info.id));
    const spec = guestRuntimeSpec(config, paths, slot, info);
    const { pid } =
      'boot' in start
        ? await runtime.create(spec, signal)
        : await runtime.restore(spec, start.restoreFrom, signal);
    phase('runtime');
    await Promise.all([
      network.activate(slot),
      // envd was quiesced before the checkpoint: it listens again on SIGUSR1.
      'boot' in start ? undefined : runtime.signal(info.id, 'SIGUSR1'),
    ]);
    phase('activate');

    const firstToken = 'rekeyFrom' in start && start.rekeyFrom ? start.rekeyFrom : record.accessToken;
    let envd = new EnvdClient(slot.slotIp, ENVD_PORT, firstToken, this.logger(record));
    undo.push('close envd client', () => envd.close());
    const hasExited = async () => !isAlive(pid) || (await runtime.hasExited(info.id));
    await envd.waitHealthy(ENVD_READY_TIMEOUT_MS, signal, hasExited).catch(async (err: unknown) => {
      // Whatever the sandbox's init said on its way out is the useful part of the error.
      if (!(await hasExited())) throw err;
      const log = await readFile(paths.runtimeLog, 'utf8').catch(() => '');
      const tail = log.trim().split('\n').slice(-5).join(' | ');
      throw failedPrecondition(
        `sandbox exited while starting from template ${info.template}: ${tail || 'no output'}`,
      );
    });
    // A sandbox restored from a snapshot wakes up with the snapshot's token; it gets its own here.
    await envd.init({ envVars: env, accessToken: record.accessToken });
    if (firstToken !== record.accessToken) {
      envd.close();
      envd = new EnvdClient(slot.slotIp, ENVD_PORT, record.accessToken, this.logger(record));
      undo.push('close envd client', () => envd.close());
    }
    phase('envd');
    record.slot = slot;
    record.pid = pid;
    record.envd = envd;
    record.lifetime = new AbortController();
  }

  private markRunning(record: SandboxRecord): void {
    const { info, slot } = record;
    info.envdAddress = slot ? `${slot.slotIp}:${ENVD_PORT}` : '';
    info.status = 'running';
    info.statusReason = '';
    info.autoPaused = false;
    info.pausedAt = undefined;
    this.touch(record);
    record.cpuMark = undefined;
  }

  private async writeGuestFiles(paths: SandboxPaths): Promise<void> {
    const nameservers = this.deps.config.nameservers.map((ns) => `nameserver ${ns}\n`).join('');
    await writeFile(paths.resolvConf, nameservers || '# no nameservers configured for sandboxes\n');
    await writeFile(paths.hosts, '127.0.0.1\tlocalhost wrenn\n::1\tlocalhost ip6-localhost ip6-loopback\n');
  }

  /** Removes the sandbox and everything it holds, running or paused. Every step runs even if one fails. */
  async destroy(id: string): Promise<void> {
    const record = this.find(id);
    await this.serially(record, async () => {
      if (!this.sandboxes.has(id)) return;
      await record.teardown;
      // A sandbox that died is being released already; `error` is a release that failed: try again,
      // every step is idempotent.
      if (!record.releasing || record.info.status === 'error') {
        record.releasing = this.release(record, 'destroyed', { keepLayer: false });
      }
      try {
        await record.releasing;
      } catch (err) {
        record.releasing = undefined;
        record.info.status = 'error';
        record.info.statusReason = errorMessage(err);
        throw err;
      }
      record.info.status = 'stopped';
      this.sandboxes.delete(id);
    });
  }

  /**
   * Frees what a sandbox holds. `keepLayer` (pause): the runtime, slot and mounts go, the disk image
   * and checkpoint stay.
   */
  private async release(record: SandboxRecord, why: string, opts: { keepLayer: boolean }): Promise<void> {
    const { runtime, network, slots } = this.deps;
    const { info, paths, slot } = record;
    const logger = this.logger(record);
    record.lifetime.abort(
      new ConnectError(
        `sandbox ${info.id} ${why === 'paused' ? 'was paused' : `stopped: ${why}`}`,
        Code.Aborted,
      ),
    );
    const failures: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${what}: ${errorMessage(err)}`);
        logger.error({ err: errorMessage(err), step: what }, 'release step failed');
      }
    };
    record.envd?.close();
    record.envd = undefined;
    info.envdAddress = '';
    // The slot and the runtime are independent; storage waits for the runtime (its gofer holds files).
    await Promise.all([
      slot &&
        step('network', () => network.release(slot)).then(() => {
          slots.release(slot.index);
          record.slot = undefined;
        }),
      step('runtime', () => runtime.destroy(info.id)).then(() =>
        step('storage', () => (opts.keepLayer ? unmountRootfs(paths, logger) : destroyRootfs(paths, logger))),
      ),
    ]);
    record.pid = undefined;
    if (failures.length) {
      throw new ConnectError(`releasing ${info.id} left work undone: ${failures.join('; ')}`, Code.Internal);
    }
    logger.info({ why }, 'sandbox resources released');
  }

  /** At shutdown: running sandboxes are destroyed; paused ones stay on disk for the next agent. */
  async destroyAll(): Promise<void> {
    const all = [...this.sandboxes.values()];
    const running = all.filter((r) => r.info.status !== 'paused');
    await Promise.allSettled([...running.map((r) => this.destroy(r.info.id)), ...all.map((r) => r.teardown)]);
  }

  /** At start: paused sandboxes a previous agent left on disk become this agent's again. */
  async adoptPaused(): Promise<string[]> {
    const adopted: string[] = [];
    for (const id of await readdir(this.deps.layout.sandboxesDir).catch(() => [] as string[])) {
      const paths = sandboxPaths(this.deps.layout, id);
      const state = await readPausedState(paths).catch(() => undefined);
      if (!state || this.sandboxes.has(id)) continue;
      const record = newRecord(state.info, paths, state.baseImage, state.accessToken);
      record.lastActive = state.info.lastActiveAt.getTime();
      this.sandboxes.set(id, record);
      adopted.push(id);
    }
    if (adopted.length) this.deps.logger.info({ sandboxes: adopted }, 'adopted paused sandboxes');
    return adopted;
  }

  // ---------------------------------------------------------------------------------------------
  // Pause and resume

  /**
   * Checkpoints the sandbox to disk and frees its runtime, memory and network slot. A failure leaves
   * it running. Pausing a paused sandbox changes nothing.
   */
  async pause(id: string, opts: { auto?: boolean } = {}): Promise<SandboxInfo> {
    const record = this.find(id);
    return this.serially(record, async () => {
      if (record.info.status === 'paused') return { ...record.info };
      await this.checkpointRunning(record);
      await this.enterPaused(record, opts.auto ?? false);
      return { ...record.info };
    });
  }

  /**
   * Quiesces envd, saves the sandbox into its checkpoint dir and frees its runtime, slot and mounts
   * (the disk image stays). On failure the sandbox is running again, or — if the save went through
   * even though the runtime reported an error — restored from what it saved.
   */
  private async checkpointRunning(record: SandboxRecord): Promise<void> {
    const { runtime } = this.deps;
    const { info, paths } = record;
    this.assertRunning(record, 'pause');
    const unsupported = await runtime.checkpointSupport();
    if (unsupported) throw failedPrecondition(`cannot pause sandbox ${info.id}: ${unsupported}`);
    const logger = this.logger(record);
    const timer = phaseTimer();
    record.transition = 'pausing';
    try {
      await rm(paths.checkpointPartial, { recursive: true, force: true });
      await this.quiesce(record);
      timer.phase('quiesce');
      try {
        await runtime.checkpoint(info.id, paths.checkpointPartial);
      } catch (err) {
        await this.recoverFromFailedCheckpoint(record, err);
        throw asConnectError(err, `pause sandbox ${info.id} (it keeps running)`);
      }
      timer.phase('checkpoint');
      await rm(paths.checkpoint, { recursive: true, force: true });
      await rename(paths.checkpointPartial, paths.checkpoint);
      // The image is on disk: the pause has happened. Freeing the runtime, slot and mounts (~120 ms)
      // goes on after the answer; every later operation on this sandbox waits for it (`settled`).
      record.teardown = this.release(record, 'paused', { keepLayer: true })
        .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'teardown after pause failed'))
        .finally(() => (record.teardown = undefined));
      logger.info({ ms: timer.total(), phases: timer.phases }, 'sandbox checkpointed');
    } finally {
      record.transition = undefined;
    }
  }

  private async quiesce(record: SandboxRecord): Promise<void> {
    const { info, slot } = record;
    record.envd?.close();
    await this.deps.runtime.signal(info.id, 'SIGUSR2');
    if (!slot) return;
    const deadline = Date.now() + QUIESCE_WAIT_MS;
    while (Date.now() < deadline && (await isListening(slot.slotIp, ENVD_PORT))) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * A checkpoint that failed leaves the sandbox in one of two places, and the runtime's exit status
   * does not say which: still running (the save never started, or was abandoned), or saving on its own
   * until it stops (the runsc that asked for the save died, but the sandbox holds the image files and
   * finishes). Wait until it is clearly one or the other, then bring it back to running.
   */
  private async recoverFromFailedCheckpoint(record: SandboxRecord, cause: unknown): Promise<void> {
    const { runtime } = this.deps;
    const { info, paths } = record;
    const logger = this.logger(record);
    logger.warn({ err: errorMessage(cause) }, 'checkpoint failed; recovering');
    const pid = record.pid ?? 0;
    const deadline = Date.now() + CHECKPOINT_SETTLE_MS;
    try {
      while (isAlive(pid)) {
        try {
          await runtime.signal(info.id, 'SIGUSR1');
          await this.reconnectEnvd(record, () => Promise.resolve(!isAlive(pid)));
          logger.info('the sandbox kept running; pause abandoned');
          return;
        } catch (err) {
          if (!isAlive(pid)) break;
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      logger.warn('the sandbox stopped after saving itself; restoring it from the saved image');
      await this.releaseRuntimeAndSlot(record);
      const undo = new UndoStack();
      try {
        await this.startRuntime(record, { restoreFrom: paths.checkpointPartial }, undo);
      } catch (err) {
        await undo.run(logger);
        throw err;
      }
      this.markRunning(record);
    } catch (err) {
      logger.error(
        { err: errorMessage(err) },
        'could not recover from a failed checkpoint; the sandbox is lost',
      );
      info.statusReason = `lost during a failed pause: ${errorMessage(cause)}`;
      info.status = 'stopped';
      record.releasing = this.release(record, info.statusReason, { keepLayer: false });
      await record.releasing.catch(() => undefined);
    } finally {
      await rm(paths.checkpointPartial, { recursive: true, force: true });
    }
  }

  private async releaseRuntimeAndSlot(record: SandboxRecord): Promise<void> {
    const { slot, info } = record;
    record.envd?.close();
    record.envd = undefined;
    await this.deps.runtime.destroy(info.id);
    record.pid = undefined;
    if (slot) {
      await this.deps.network.release(slot);
      this.deps.slots.release(slot.index);
      record.slot = undefined;
    }
  }

  private async reconnectEnvd(record: SandboxRecord, hasExited: () => Promise<boolean>): Promise<void> {
    const { slot, info } = record;
    if (!slot) throw new Error(`sandbox ${info.id} has no network slot`);
    const envd = new EnvdClient(slot.slotIp, ENVD_PORT, record.accessToken, this.logger(record));
    try {
      await envd.waitHealthy(ENVD_READY_TIMEOUT_MS, undefined, hasExited);
    } catch (err) {
      envd.close();
      throw err;
    }
    record.envd = envd;
  }

  private async enterPaused(record: SandboxRecord, auto: boolean): Promise<void> {
    const { info } = record;
    info.status = 'paused';
    info.autoPaused = auto;
    info.pausedAt = new Date();
    info.statusReason = auto ? `paused after ${info.timeoutSec} s without activity` : '';
    await writePausedState(record);
  }

  /** Restores a paused sandbox into a fresh slot. A failure leaves it paused with its checkpoint. */
  async resume(id: string, opts: { timeoutSec?: number } = {}, signal?: AbortSignal): Promise<SandboxInfo> {
    const record = this.find(id);
    return this.serially(record, async () => {
      if (opts.timeoutSec !== undefined) record.info.timeoutSec = opts.timeoutSec;
      if (record.info.status === 'running') {
        this.touch(record);
        return { ...record.info };
      }
      await this.restorePaused(record, signal);
      return { ...record.info };
    });
  }

  private async restorePaused(record: SandboxRecord, signal?: AbortSignal): Promise<void> {
    await record.teardown;
    const { info, paths } = record;
    if (info.status !== 'paused') {
      throw failedPrecondition(`sandbox ${info.id} is ${info.status}, not paused`);
    }
    const logger = this.logger(record);
    const timer = phaseTimer();
    const undo = new UndoStack();
    record.transition = 'resuming';
    try {
      const prepareDisk = async () => {
        await mountRootfs(paths, await this.deps.templates.imageRootfs(record.baseImage));
        undo.push('unmount rootfs', () => unmountRootfs(paths, logger));
      };
      await this.startRuntime(record, { restoreFrom: paths.checkpoint }, undo, {
        signal,
        phase: timer.phase,
        prepareDisk,
      });
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'resume failed; the sandbox stays paused');
      await undo.run(logger);
      throw asConnectError(err, `resume sandbox ${info.id} (it stays paused)`);
    } finally {
      record.transition = undefined;
    }
    // The checkpoint is spent: the sandbox has moved on from it.
    await rm(paths.stateFile, { force: true });
    await rm(paths.checkpoint, { recursive: true, force: true });
    this.markRunning(record);
    logger.info({ ms: timer.total(), phases: timer.phases, slot: record.slot?.index }, 'sandbox resumed');
  }

  // ---------------------------------------------------------------------------------------------
  // Templates from sandboxes

  /**
   * A snapshot template: the sandbox is checkpointed (briefly paused), its checkpoint and disk layer
   * become the template, and it is restored again. A paused sandbox is snapshotted as it is.
   */
  async createSnapshot(id: string, name: string): Promise<Template> {
    const record = this.find(id);
    const { templates } = this.deps;
    return this.serially(record, async () => {
      await templates.assertNameFree(name);
      const wasRunning = record.info.status === 'running';
      if (wasRunning) {
        await this.checkpointRunning(record);
        record.info.status = 'paused';
      } else if (record.info.status !== 'paused') {
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
          await copyDiskImage(record.paths.diskImage, path.join(dir, 'disk.ext4'));
          const { info } = record;
          const meta: SnapshotMeta = {
            kind: 'snapshot',
            name,
            baseImage: record.baseImage,
            vcpus: info.vcpus,
            memoryMb: info.memoryMb,
            diskMb: info.diskMb,
            createdAt: new Date().toISOString(),
            sourceSandbox: id,
            envdToken: record.accessToken,
          };
          return meta;
        });
      } finally {
        if (wasRunning) await this.resumeAfterSnapshot(record);
      }
    });
  }

  private async resumeAfterSnapshot(record: SandboxRecord): Promise<void> {
    try {
      await this.restorePaused(record);
    } catch (err) {
      await this.enterPaused(record, false);
      record.info.statusReason = `paused: resuming after the snapshot failed (${errorMessage(err)}); resume to retry`;
      throw err;
    }
  }

  /**
   * A new image template from the sandbox's root filesystem (its template and its changes, merged
   * into one plain directory tree). A running sandbox is frozen while it is copied.
   */
  async flattenRootfs(id: string, name: string): Promise<Template> {
    const record = this.find(id);
    const { templates, runtime } = this.deps;
    return this.serially(record, async () => {
      await templates.assertNameFree(name);
      const { info, paths } = record;
      const logger = this.logger(record);
      const copyInto = (dir: string) =>
        exec(['cp', '-a', '--sparse=always', `${paths.rootfs}/.`, path.join(dir, 'rootfs')], {
          timeoutMs: 1_800_000,
        });
      const stage = () =>
        templates.stage(name, async (dir) => {
          await mkdir(path.join(dir, 'rootfs'));
          await copyInto(dir);
          return { flattenedFrom: id };
        });
      if (info.status === 'paused') {
        await record.teardown;
        await mountRootfs(paths, await templates.imageRootfs(record.baseImage));
        try {
          return await stage();
        } finally {
          await unmountRootfs(paths, logger);
        }
      }
      const { envd, done } = this.connection(id);
      // gVisor may hold written data in its own cache: flush it to the layer before copying.
      await runSync(envd).finally(done);
      record.transition = 'flattening';
      await runtime.freeze(info.id);
      try {
        return await stage();
      } finally {
        await runtime
          .thaw(info.id)
          .catch((err: unknown) => logger.error({ err }, 'thaw after flatten failed'));
        record.transition = undefined;
      }
    });
  }

  async deleteTemplate(name: string): Promise<void> {
    const { templates } = this.deps;
    const template = await templates.resolve(name, 'name');
    if ((this.snapshotUsers.get(name) ?? 0) > 0) {
      throw failedPrecondition(`template ${name} is in use: sandboxes are being created from it`);
    }
    const users = [...this.sandboxes.values()].filter((r) => r.baseImage === name).map((r) => r.info.id);
    if (template.kind === 'image' && users.length) {
      throw failedPrecondition(`template ${name} is in use by sandbox(es) ${users.join(', ')}`);
    }
    const dependents = (await templates.all())
      .filter((t) => t.kind === 'snapshot' && t.meta.baseImage === name)
      .map((t) => t.name);
    if (dependents.length)
      throw failedPrecondition(`template ${name} is the base of snapshot(s) ${dependents.join(', ')}`);
    await templates.delete(name);
  }

  private async withSnapshotInUse<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.snapshotUsers.set(name, (this.snapshotUsers.get(name) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      this.snapshotUsers.set(name, (this.snapshotUsers.get(name) ?? 1) - 1);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Activity and the inactivity timeout

  ping(id: string): void {
    const record = this.find(id);
    this.assertRunning(record, 'ping');
    this.touch(record);
  }

  setTimeout(id: string, timeoutSec: number): void {
    const record = this.find(id);
    record.info.timeoutSec = timeoutSec;
    this.touch(record);
  }

  private touch(record: SandboxRecord): void {
    record.lastActive = Date.now();
    record.info.lastActiveAt = new Date(record.lastActive);
  }

  /** Running sandboxes whose timeout passed with nothing in flight, to be paused by the reaper. */
  expired(now = Date.now()): string[] {
    return [...this.sandboxes.values()]
      .filter(
        (r) =>
          r.info.status === 'running' &&
          !r.transition &&
          !r.releasing &&
          r.info.timeoutSec > 0 &&
          r.activeCalls === 0 &&
          now - r.lastActive >= r.info.timeoutSec * 1000,
      )
      .map((r) => r.info.id);
  }

  /**
   * Pauses every expired sandbox; one that cannot be paused is destroyed (an expired sandbox must not
   * keep its resources). Not tied to any request: shutdown waits for it rather than cutting it short.
   */
  async pauseExpired(): Promise<void> {
    await Promise.allSettled(
      this.expired().map(async (id) => {
        const logger = this.deps.logger.child({ sandboxId: id });
        try {
          // Activity may have arrived while this pass was queued behind another operation.
          const record = this.sandboxes.get(id);
          if (!record || !this.expired().includes(id)) return;
          await this.pause(id, { auto: true });
          logger.info({ timeoutSec: record.info.timeoutSec }, 'paused after inactivity');
        } catch (err) {
          if (!this.sandboxes.has(id) || this.sandboxes.get(id)?.info.status === 'paused') return;
          logger.warn({ err: errorMessage(err) }, 'could not pause an expired sandbox; destroying it');
          await this.destroy(id).catch((e: unknown) =>
            logger.error({ err: errorMessage(e) }, 'destroy failed'),
          );
        }
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Metrics

  async sampleMetrics(now = Date.now()): Promise<void> {
    await Promise.all(
      [...this.sandboxes.values()].map(async (record) => {
        if (record.info.status !== 'running' || record.transition || record.releasing) return;
        try {
          const stats = await this.deps.runtime.stats(record.info.id);
          const sample = await takeSample({
            now,
            stats,
            previous: record.cpuMark,
            vcpus: record.info.vcpus,
            memoryMb: record.info.memoryMb,
            diskMount: record.paths.diskMount,
          });
          record.cpuMark = { ns: stats.cpuNs, at: now };
          record.metrics.add(sample);
        } catch {
          // A sandbox stopping under us has no cgroup any more; the next pass will not ask.
        }
      }),
    );
  }

  metrics(id: string, range: MetricsRange): MetricSample[] {
    return this.find(id).metrics.range(range);
  }

  // ---------------------------------------------------------------------------------------------
  // Death of a sandbox (host OOM kill, runtime crash)

  /**
   * Sandboxes whose runtime process died on its own become `stopped` with the reason, their calls in
   * flight fail with it, and their resources are freed. The record stays (so its owner can read why)
   * until DestroySandbox.
   */
  async reapDead(): Promise<void> {
    for (const record of this.sandboxes.values()) {
      if (await this.isBroken(record)) await this.reap(record);
    }
  }

  /**
   * Running on paper but not in fact: its process is gone, or the host's OOM killer took one of its
   * processes (a systrap stub or envd), which leaves a sandbox that cannot be trusted to work.
   */
  private async isBroken(record: SandboxRecord): Promise<boolean> {
    if (record.info.status !== 'running' || record.transition || record.releasing || !record.pid)
      return false;
    return !isAlive(record.pid) || (await this.deps.runtime.wasOomKilled(record.info.id));
  }

  /**
   * After a call to a sandbox failed at the connection level: if the sandbox died (its process may
   * still be exiting, so wait up to `graceMs`), the error that says why; otherwise undefined.
   */
  async deathOf(id: string, graceMs = 1000): Promise<ConnectError | undefined> {
    const record = this.sandboxes.get(id);
    if (!record) return undefined;
    const lifetime = record.lifetime;
    const deadline = Date.now() + graceMs;
    let broken = await this.isBroken(record);
    while (!broken && !lifetime.signal.aborted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      broken = await this.isBroken(record);
    }
    if (broken) await this.reap(record);
    const reason: unknown = lifetime.signal.reason;
    return lifetime.signal.aborted && reason instanceof ConnectError ? reason : undefined;
  }

  // Set `releasing` synchronously: the watchdog and a failing call may both find the same corpse.
  private reap(record: SandboxRecord): Promise<void> {
    record.releasing ??= (async () => {
      const reason = await this.deps.runtime.exitReason(record.info.id);
      this.deps.logger.warn({ sandboxId: record.info.id, reason }, 'sandbox died');
      record.info.statusReason = reason;
      record.info.status = 'stopped';
      await this.release(record, reason, { keepLayer: false });
    })();
    return record.releasing.catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------
  // Lookups

  get(id: string): SandboxInfo {
    return { ...this.find(id).info };
  }

  list(): SandboxInfo[] {
    return [...this.sandboxes.values()].map((r) => ({ ...r.info }));
  }

  /** The token the sandbox's envd requires; stable for the sandbox's life, across pause/resume. */
  envdAccessToken(id: string): string {
    return this.sandboxes.get(id)?.accessToken ?? '';
  }

  /**
   * The envd connection of a running sandbox for one call, and a signal that aborts when the sandbox
   * stops. The call counts as activity until `done`.
   */
  connection(id: string): { envd: EnvdClient; stopped: AbortSignal; done: () => void } {
    const record = this.find(id);
    this.assertRunning(record, 'use');
    const envd = record.envd;
    if (!envd) throw failedPrecondition(`sandbox ${id} is not running`);
    record.activeCalls++;
    this.touch(record);
    let finished = false;
    return {
      envd,
      stopped: record.lifetime.signal,
      done: () => {
        if (finished) return;
        finished = true;
        record.activeCalls--;
        this.touch(record);
      },
    };
  }

  private find(id: string): SandboxRecord {
    const record = this.sandboxes.get(id);
    if (!record) throw notFound('sandbox', id);
    return record;
  }

  private assertRunning(record: SandboxRecord, what: string): void {
    const { info } = record;
    if (info.status === 'running' && !record.transition && !record.releasing) return;
    const state =
      record.transition ?? (record.releasing && info.status === 'running' ? 'stopping' : info.status);
    const why = info.statusReason ? ` (${info.statusReason})` : '';
    throw failedPrecondition(`cannot ${what} sandbox ${info.id}: it is ${state}, not running${why}`);
  }

  private serially<T>(record: SandboxRecord, fn: () => Promise<T>): Promise<T> {
    const run = record.queue.then(fn, fn);
    record.queue = run.catch(() => undefined);
    return run;
  }

  private logger(record: SandboxRecord): Logger {
    return this.deps.logger.child({ sandboxId: record.info.id });
  }
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

function asConnectError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return new ConnectError(`${what}: ${err.rawMessage}`, err.code);
  return new ConnectError(`${what}: ${errorMessage(err)}`, Code.Internal, undefined, undefined, err);
}

async function runSync(envd: EnvdClient): Promise<void> {
  for await (const ev of runCommand(envd, {
    cmd: '/bin/sync',
    args: ['-f', '/'],
    env: {},
    cwd: '/',
    user: 'root',
    timeoutMs: 60_000,
    stdin: new Uint8Array(),
    interactive: false,
  })) {
    if (ev.type === 'exited' && ev.exitCode !== 0) throw new Error(`sync exited with ${ev.exitCode}`);
  }
}

function phaseTimer() {
  const started = performance.now();
  let mark = started;
  // Milliseconds per phase, logged with the result: where the time goes is an operator's question.
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

function isListening(host: string, port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host, port });
    const done = (listening: boolean) => {
      socket.destroy();
      resolve(listening);
    };
    socket.setTimeout(200, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
