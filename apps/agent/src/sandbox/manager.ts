import { errorMessage, failedPrecondition, type ConnectError, type EgressPolicy } from '@wrenn/core';
import type { MetricSample, MetricsRange } from '../metrics/tiers.js';
import { EnvdRuntimeBundle } from '../storage/envd-runtime.js';
import type { Template } from '../storage/templates.js';
import { createSandbox, destroyPoolMember, makePoolMember } from './create.js';
import { WarmPool, type WarmPoolInfo } from './warm-pool.js';
import { envdGuest, hostStorage, processAlive, type LifecycleDeps } from './deps.js';
import { deathOf, destroyAll, destroySandbox } from './destroy.js';
import type { EnvdClient } from './envd-client.js';
import { InteractiveCommands } from './interactive.js';
import { pauseSandbox, resumeSandbox } from './pause-resume.js';
import { updateNetwork } from './egress.js';
import { recoverSandboxes, type RestartReport } from './adoption.js';
import type { Kept } from '../services/janitor.js';
import { writeSandboxState, type CreateSandboxParams, type SandboxInfo } from './record.js';
import { SandboxRegistry, touch } from './registry.js';
import { newSlot, removeSlot, type SandboxContext } from './resources.js';
import { PreparedSlots } from '../network/prepared-slots.js';
import { createSnapshot, deleteTemplate, flattenRootfs } from './snapshot.js';
import { exportPaused, exportTemplate, importPaused, importTemplate } from './transfer.js';
import type { ArtifactDigest } from '../storage/artifact-stream.js';
import { assertRunning } from './state.js';

export { SIZE_DEFAULTS } from './create.js';
export type { CreateSandboxParams, SandboxInfo, SandboxStatus } from './record.js';

/** The host's parts; storage, guest and pid checks default to the real ones (tests pass fakes). */
export type SandboxManagerDeps = Omit<LifecycleDeps, 'storage' | 'guest' | 'pidAlive' | 'envdRuntime'> &
  Partial<Pick<LifecycleDeps, 'storage' | 'guest' | 'pidAlive' | 'envdRuntime'>>;

/**
 * The face the RPC layer and the agent's start-up see. It holds no logic of its own: each operation
 * lives in its module (create, destroy, pause-resume, snapshot) and the loops in services/.
 */
export class SandboxManager {
  /** For the background loops (services/), which work on the registry directly. */
  readonly ctx: SandboxContext;
  /** Interactive commands by sandbox and pid, for input and resizes. */
  readonly interactive = new InteractiveCommands();

  constructor(deps: SandboxManagerDeps) {
    const ctx: SandboxContext = {
      deps: {
        storage: hostStorage,
        guest: envdGuest,
        pidAlive: processAlive,
        envdRuntime: new EnvdRuntimeBundle({
          nodePath: deps.config.nodePath,
          envdDir: deps.config.envdDir,
          dir: deps.layout.envdRuntimeDir,
          logger: deps.logger,
        }),
        ...deps,
      },
      registry: new SandboxRegistry(),
    };
    const pool: WarmPool = new WarmPool(
      {
        make: (template, signal) => makePoolMember(ctx, template, signal),
        destroy: (record) => destroyPoolMember(ctx, record),
        alive: (record) => record.pid !== undefined && ctx.deps.pidAlive(record.pid),
      },
      {
        room: () => ctx.deps.config.maxSandboxes - ctx.registry.size - pool.held,
        logger: ctx.deps.logger.child({ component: 'warm-pool' }),
      },
    );
    ctx.pool = pool;
    ctx.preparedSlots = new PreparedSlots(
      {
        allocate: () => newSlot(ctx.deps),
        prepare: (slot) => ctx.deps.network.prepare(slot),
        release: (slot) => removeSlot(ctx.deps, slot),
        busy: () => pool.busy,
      },
      deps.config.preparedSlots,
      ctx.deps.logger.child({ component: 'prepared-slots' }),
    );
    this.ctx = ctx;
    this.pool = pool;
    this.preparedSlots = ctx.preparedSlots;
  }

  /** Network slots built ahead of need (started by the agent after recovery, stopped before it ends). */
  readonly preparedSlots: PreparedSlots;

  /** Running sandboxes kept ready per template (sizes set by `setWarmPool`, filled by `refillPools`). */
  readonly pool: WarmPool;

  setWarmPool(template: string, size: number): Promise<WarmPoolInfo> {
    return this.pool.setSize(template, size);
  }

  listWarmPools(): WarmPoolInfo[] {
    return this.pool.list();
  }

  create(params: CreateSandboxParams, signal?: AbortSignal): Promise<SandboxInfo> {
    return createSandbox(this.ctx, params, signal);
  }

  destroy(id: string, signal?: AbortSignal): Promise<void> {
    return destroySandbox(this.ctx, id, signal);
  }

  destroyAll(): Promise<void> {
    return destroyAll(this.ctx);
  }

  /**
   * At start: the sandboxes a previous agent left become this one's (running where they run, paused
   * on disk), interrupted operations end, and `cleanUp` (the janitor) removes everything else.
   */
  recoverAfterRestart(
    cleanUp: (kept: Kept) => Promise<void> = () => Promise.resolve(),
  ): Promise<RestartReport> {
    return recoverSandboxes(this.ctx, cleanUp);
  }

  /** The paused sandboxes a previous agent left on disk (unit tests: an agent on the same data dir). */
  async adoptPaused(): Promise<string[]> {
    return (await this.recoverAfterRestart()).paused;
  }

  pause(id: string, signal?: AbortSignal): Promise<SandboxInfo> {
    return pauseSandbox(this.ctx, id, { signal });
  }

  resume(
    id: string,
    opts: { timeoutSec?: number; egress?: EgressPolicy } = {},
    signal?: AbortSignal,
  ): Promise<SandboxInfo> {
    return resumeSandbox(this.ctx, id, opts, signal);
  }

  /** Replaces the sandbox's egress policy (running: in force when this returns; paused: on resume). */
  updateNetwork(id: string, egress: EgressPolicy | undefined): Promise<void> {
    return updateNetwork(this.ctx, id, egress);
  }

  createSnapshot(id: string, name: string, signal?: AbortSignal): Promise<Template> {
    return createSnapshot(this.ctx, id, name, signal);
  }

  flattenRootfs(id: string, name: string, signal?: AbortSignal): Promise<Template> {
    return flattenRootfs(this.ctx, id, name, signal);
  }

  deleteTemplate(name: string): Promise<void> {
    return deleteTemplate(this.ctx, name);
  }

  /** The bytes of a template this agent made, for another host (`importTemplate`). */
  exportTemplate(name: string, signal?: AbortSignal): Promise<AsyncGenerator<Uint8Array, ArtifactDigest>> {
    return exportTemplate(this.ctx, name, signal);
  }

  /** The bytes of a paused sandbox, for another host (`importSandbox`); it stays here, paused. */
  exportSandbox(id: string, signal?: AbortSignal): AsyncGenerator<Uint8Array, ArtifactDigest> {
    return exportPaused(this.ctx, id, signal);
  }

  importTemplate(
    name: string,
    chunks: AsyncIterable<Uint8Array>,
    verify: (received: ArtifactDigest) => void,
  ): Promise<Template> {
    return importTemplate(this.ctx, name, chunks, verify);
  }

  importSandbox(
    id: string,
    chunks: AsyncIterable<Uint8Array>,
    verify: (received: ArtifactDigest) => void,
  ): Promise<SandboxInfo> {
    return importPaused(this.ctx, id, chunks, verify);
  }

  ping(id: string): void {
    const record = this.ctx.registry.find(id);
    assertRunning(record, 'ping');
    touch(record);
  }

  setTimeout(id: string, timeoutSec: number): void {
    const record = this.ctx.registry.find(id);
    record.info.timeoutSec = timeoutSec;
    touch(record);
    // The next agent keeps the new timeout. Not awaited: writes of one record run in order (record.ts).
    if (record.state === 'running' || record.state === 'paused') {
      writeSandboxState(record).catch((err: unknown) =>
        this.ctx.deps.logger.warn({ sandboxId: id, err: errorMessage(err) }, 'could not record the timeout'),
      );
    }
  }

  get(id: string): SandboxInfo {
    return this.ctx.registry.get(id);
  }

  list(): SandboxInfo[] {
    return this.ctx.registry.list();
  }

  /** The token the sandbox's envd requires; stable for the sandbox's life, across pause/resume. */
  envdAccessToken(id: string): string {
    return this.ctx.registry.lookup(id)?.accessToken ?? '';
  }

  connection(id: string): { envd: EnvdClient; stopped: AbortSignal; done: () => void } {
    return this.ctx.registry.connection(id);
  }

  /**
   * Where a tunnel to a port of the running sandbox goes (its slot address). The tunnel is a call
   * like any other: activity while it is open, closed when the sandbox stops.
   */
  tunnelTarget(id: string): { host: string; stopped: AbortSignal; done: () => void } {
    const { stopped, done } = this.ctx.registry.connection(id);
    const host = this.ctx.registry.lookup(id)?.slot?.slotIp;
    if (!host) {
      done();
      throw failedPrecondition(`sandbox ${id} has no network slot`);
    }
    return { host, stopped, done };
  }

  deathOf(id: string, graceMs?: number): Promise<ConnectError | undefined> {
    return deathOf(this.ctx, id, graceMs);
  }

  metrics(id: string, range: MetricsRange): MetricSample[] {
    return this.ctx.registry.find(id).metrics.range(range);
  }
}
