import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import {
  Code,
  ConnectError,
  errorMessage,
  failedPrecondition,
  notFound,
  randomId,
  resourceExhausted,
  UndoStack,
  type Logger,
} from '@wrenn/core';
import { ENVD_PORT } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import type { RuntimeDriver } from '../runtime/driver.js';
import { slotAddresses, type NetworkSlot } from '../network/addresses.js';
import type { SlotAllocator } from '../network/slot-allocator.js';
import type { SlotNetwork } from '../network/slot-network.js';
import { sandboxPaths, type DataLayout, type SandboxPaths } from '../storage/layout.js';
import { createRootfs, destroyRootfs } from '../storage/rootfs.js';
import { resolveTemplateRootfs } from '../storage/templates.js';
import { EnvdClient } from './envd-client.js';

export type SandboxStatus = 'pending' | 'running' | 'stopped' | 'error';

export interface SandboxInfo {
  id: string;
  template: string;
  status: SandboxStatus;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  metadata: Record<string, string>;
  createdAt: Date;
  envdAddress: string;
  /** Why the sandbox is in its status when nobody asked for it (e.g. out of memory). */
  statusReason: string;
}

export interface CreateSandboxParams {
  id?: string;
  template: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  env: Record<string, string>;
  metadata: Record<string, string>;
}

interface SandboxRecord {
  info: SandboxInfo;
  paths: SandboxPaths;
  slot?: NetworkSlot;
  envd?: EnvdClient;
  /** Host pid of the runtime's sandbox process, watched for unexpected death. */
  pid?: number;
  /** Aborted when the sandbox stops for any reason: cancels every call in flight to its envd. */
  lifetime: AbortController;
  /** Settles when creation finished (either way); destroy waits for it. */
  created: Promise<void>;
  /** Set once: releasing the sandbox's resources (on destroy, or when it died). */
  releasing?: Promise<void>;
  destroying?: Promise<void>;
}

export interface SandboxManagerDeps {
  config: AgentConfig;
  layout: DataLayout;
  runtime: RuntimeDriver;
  network: SlotNetwork;
  slots: SlotAllocator;
  logger: Logger;
}

// Paths inside every sandbox where the agent provides envd and its runtime (read-only).
const GUEST_DIR = '/opt/wrenn';
const ENVD_READY_TIMEOUT_MS = 20_000;

/** Owns the sandboxes of this host: their state machine and every resource each one holds. */
export class SandboxManager {
  private readonly sandboxes = new Map<string, SandboxRecord>();

  constructor(private readonly deps: SandboxManagerDeps) {}

  async create(params: CreateSandboxParams, signal?: AbortSignal): Promise<SandboxInfo> {
    const { config, layout } = this.deps;
    const lowerDir = await resolveTemplateRootfs(layout, params.template);
    if (this.sandboxes.size >= config.maxSandboxes) {
      throw resourceExhausted(`this host runs its maximum of ${config.maxSandboxes} sandboxes`);
    }
    const id = params.id || randomId(20);
    if (this.sandboxes.has(id))
      throw new ConnectError(`sandbox ${JSON.stringify(id)} already exists`, Code.AlreadyExists);
    const record: SandboxRecord = {
      info: {
        id,
        template: params.template,
        status: 'pending',
        vcpus: params.vcpus,
        memoryMb: params.memoryMb,
        diskMb: params.diskMb,
        metadata: params.metadata,
        createdAt: new Date(),
        envdAddress: '',
        statusReason: '',
      },
      paths: sandboxPaths(layout, id),
      lifetime: new AbortController(),
      created: Promise.resolve(),
    };
    this.sandboxes.set(id, record);
    const creation = this.build(record, lowerDir, params.env, signal);
    record.created = creation.then(
      () => undefined,
      () => undefined,
    );
    try {
      await creation;
      return { ...record.info };
    } catch (err) {
      this.sandboxes.delete(id);
      throw err;
    }
  }

  private async build(
    record: SandboxRecord,
    lowerDir: string,
    env: Record<string, string>,
    signal?: AbortSignal,
  ) {
    const { config, runtime, network, slots } = this.deps;
    const { info, paths } = record;
    const logger = this.deps.logger.child({ sandboxId: info.id });
    const undo = new UndoStack();
    const started = performance.now();
    // Milliseconds per phase, logged with the result: where create time goes is an operator's question.
    const phases: Record<string, number> = {};
    let mark = started;
    const phase = (name: string) => {
      const now = performance.now();
      phases[name] = Math.round(now - mark);
      mark = now;
    };
    try {
      await mkdir(paths.dir, { recursive: true });
      undo.push('remove sandbox dir', () => destroyRootfs(paths, logger));

      const slot = slotAddresses(slots.allocate(), config.slotSubnet.base);
      undo.push('release slot index', () => slots.release(slot.index));
      await network.prepare(slot);
      undo.push('remove network slot', () => network.release(slot));
      record.slot = slot;
      phase('network');

      await createRootfs(paths, lowerDir, info.diskMb);
      await this.writeGuestFiles(paths);
      phase('rootfs');

      signal?.throwIfAborted();
      // Registered before the call: a run that fails halfway can leave runsc state and cgroups, and
      // destroy is idempotent.
      undo.push('destroy runtime sandbox', () => runtime.destroy(info.id));
      const { pid } = await runtime.create(
        {
          id: info.id,
          rootfs: paths.rootfs,
          bundleDir: paths.bundle,
          logFile: paths.runtimeLog,
          netnsPath: slot.netnsPath,
          vcpus: info.vcpus,
          memoryMb: info.memoryMb,
          pidsLimit: config.pidsLimit,
          hostname: 'wrenn',
          mounts: [
            { source: config.nodePath, destination: `${GUEST_DIR}/bin/node`, readonly: true },
            { source: config.tiniPath, destination: `${GUEST_DIR}/bin/tini`, readonly: true },
            { source: config.envdDir, destination: `${GUEST_DIR}/envd`, readonly: true },
            // An explicit /tmp also keeps gVisor from putting a memory-backed tmpfs there.
            { source: paths.tmp, destination: '/tmp', readonly: false },
            { source: paths.resolvConf, destination: '/etc/resolv.conf', readonly: false },
            { source: paths.hosts, destination: '/etc/hosts', readonly: false },
          ],
          init: {
            args: [`${GUEST_DIR}/bin/tini`, '--', `${GUEST_DIR}/bin/node`, `${GUEST_DIR}/envd/envd.mjs`],
            env: [
              'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
              'HOME=/root',
              `ENVD_PORT=${ENVD_PORT}`,
            ],
            cwd: '/',
          },
        },
        signal,
      );
      record.pid = pid;
      phase('runtime');
      await network.activate(slot);
      phase('activate');

      // A fresh token per sandbox: only the agent (and whoever it hands the token to) may drive envd.
      const accessToken = randomBytes(24).toString('hex');
      const envd = new EnvdClient(slot.slotIp, ENVD_PORT, accessToken, logger);
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
      await envd.init({ envVars: env, accessToken });
      phase('envd');
      record.envd = envd;
      info.envdAddress = `${slot.slotIp}:${ENVD_PORT}`;
      info.status = 'running';
      logger.info(
        { ms: Math.round(performance.now() - started), phases, slot: slot.index, template: info.template },
        'sandbox created',
      );
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'sandbox creation failed; rolling back');
      info.status = 'error';
      await undo.run(logger);
      throw err instanceof ConnectError
        ? err
        : new ConnectError(`create sandbox: ${errorMessage(err)}`, Code.Internal, undefined, undefined, err);
    }
  }

  private async writeGuestFiles(paths: SandboxPaths): Promise<void> {
    const nameservers = this.deps.config.nameservers.map((ns) => `nameserver ${ns}\n`).join('');
    await writeFile(paths.resolvConf, nameservers || '# no nameservers configured for sandboxes\n');
    await writeFile(paths.hosts, '127.0.0.1\tlocalhost wrenn\n::1\tlocalhost ip6-localhost ip6-loopback\n');
  }

  /** Removes the sandbox and everything it holds. Every step runs even if an earlier one failed. */
  async destroy(id: string): Promise<void> {
    const record = this.sandboxes.get(id);
    if (!record) throw notFound('sandbox', id);
    record.destroying ??= (async () => {
      await record.created;
      // A dead sandbox is (being) released already; `error` is a release that failed: try again,
      // every step is idempotent.
      if (record.info.status === 'running' || record.info.status === 'error') {
        record.releasing ??= this.release(record, 'destroyed');
      }
      try {
        await record.releasing;
      } catch (err) {
        record.releasing = undefined;
        record.destroying = undefined;
        record.info.status = 'error';
        record.info.statusReason = errorMessage(err);
        throw err;
      }
      record.info.status = 'stopped';
      this.sandboxes.delete(id);
    })();
    await record.destroying;
  }

  /**
   * Sandboxes whose runtime process died on its own (the kernel's OOM killer, a runtime crash) become
   * `stopped` with the reason, their calls in flight fail with it, and their resources are freed. The
   * record stays (so its owner can read why) until DestroySandbox.
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
    if (record.info.status !== 'running' || record.releasing || !record.pid) return false;
    return !isAlive(record.pid) || (await this.deps.runtime.wasOomKilled(record.info.id));
  }

  /**
   * After a call to a sandbox failed at the connection level: if the sandbox died (its process may
   * still be exiting, so wait up to `graceMs`), the error that says why; otherwise undefined.
   */
  async deathOf(id: string, graceMs = 1000): Promise<ConnectError | undefined> {
    const record = this.sandboxes.get(id);
    if (!record) return undefined;
    const deadline = Date.now() + graceMs;
    let broken = await this.isBroken(record);
    while (!broken && !record.lifetime.signal.aborted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      broken = await this.isBroken(record);
    }
    if (broken) await this.reap(record);
    const reason: unknown = record.lifetime.signal.reason;
    return record.lifetime.signal.aborted && reason instanceof ConnectError ? reason : undefined;
  }

  // Set `releasing` synchronously: the watchdog and a failing call may both find the same corpse.
  private reap(record: SandboxRecord): Promise<void> {
    record.releasing ??= (async () => {
      const reason = await this.deps.runtime.exitReason(record.info.id);
      this.deps.logger.warn({ sandboxId: record.info.id, reason }, 'sandbox died');
      record.info.statusReason = reason;
      record.info.status = 'stopped';
      await this.release(record, reason);
    })();
    return record.releasing.catch(() => undefined);
  }

  private async release(record: SandboxRecord, why: string): Promise<void> {
    const { runtime, network, slots } = this.deps;
    const { info, paths, slot } = record;
    const logger = this.deps.logger.child({ sandboxId: info.id });
    record.lifetime.abort(new ConnectError(`sandbox ${info.id} stopped: ${why}`, Code.Aborted));
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
    await step('runtime', () => runtime.destroy(info.id));
    if (slot) {
      await step('network', () => network.release(slot));
      slots.release(slot.index);
    }
    await step('storage', () => destroyRootfs(paths, logger));
    if (failures.length) {
      throw new ConnectError(`destroy ${info.id} left work undone: ${failures.join('; ')}`, Code.Internal);
    }
    logger.info({ why }, 'sandbox resources released');
  }

  get(id: string): SandboxInfo {
    const record = this.sandboxes.get(id);
    if (!record) throw notFound('sandbox', id);
    return { ...record.info };
  }

  list(): SandboxInfo[] {
    return [...this.sandboxes.values()].map((r) => ({ ...r.info }));
  }

  /** The envd connection of a running sandbox, and a signal that aborts when the sandbox stops. */
  connection(id: string): { envd: EnvdClient; stopped: AbortSignal } {
    const record = this.sandboxes.get(id);
    if (!record) throw notFound('sandbox', id);
    if (record.info.status !== 'running' || !record.envd || record.releasing) {
      const why = record.info.statusReason ? ` (${record.info.statusReason})` : '';
      throw failedPrecondition(
        `sandbox ${id} is ${record.info.status === 'running' && record.releasing ? 'stopping' : record.info.status}, not running${why}`,
      );
    }
    return { envd: record.envd, stopped: record.lifetime.signal };
  }

  async destroyAll(): Promise<void> {
    await Promise.allSettled([...this.sandboxes.keys()].map((id) => this.destroy(id)));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
