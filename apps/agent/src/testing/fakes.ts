import { mkdir, mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger, type EgressPolicy, type Logger } from '@wrenn/core';
import type { AgentConfig } from '../config.js';
import type { NetworkSlot } from '../network/addresses.js';
import { SlotAllocator } from '../network/slot-allocator.js';
import type {
  RuntimeDriver,
  RuntimeMemory,
  RuntimeSandboxState,
  RuntimeSandboxSpec,
  RuntimeStats,
} from '../runtime/driver.js';
import type { GuestPort, LifecycleDeps, SandboxStorage, SlotNetworkPort } from '../sandbox/deps.js';
import type { EnvdClient, EnvdInit } from '../sandbox/envd-client.js';
import { SandboxManager } from '../sandbox/manager.js';
import { DataLayout, type SandboxPaths } from '../storage/layout.js';
import { TemplateStore } from '../storage/templates.js';

/**
 * In-memory stand-ins for the host (runtime, network, disk mounts, envd) for the lifecycle's unit
 * tests: each records what it holds, so a test can say "nothing leaked", and each step can be made
 * to fail (`faults.fail`) or to wait (`faults.hold`) at a named point.
 */
export class Faults {
  private readonly failures = new Map<string, Error>();
  private readonly holds = new Map<string, { reached: () => void; released: Promise<void> }>();

  /** The next call at `point` fails with `err`. */
  fail(point: string, err = new Error(`injected failure at ${point}`)): void {
    this.failures.set(point, err);
  }

  /** The next call at `point` waits until `release()`; `reached` resolves when it starts waiting. */
  hold(point: string): { reached: Promise<void>; release: () => void } {
    let release!: () => void;
    let reached!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const reachedP = new Promise<void>((r) => (reached = r));
    this.holds.set(point, { reached, released });
    return { reached: reachedP, release };
  }

  async at(point: string): Promise<void> {
    const hold = this.holds.get(point);
    if (hold) {
      this.holds.delete(point);
      hold.reached();
      await hold.released;
    }
    const err = this.failures.get(point);
    if (err) {
      this.failures.delete(point);
      throw err;
    }
  }
}

interface FakeSandbox {
  pid: number;
  /** The runtime process exists. */
  alive: boolean;
  frozen: boolean;
}

export class FakeRuntime implements RuntimeDriver {
  readonly name = 'fake';
  readonly sandboxes = new Map<string, FakeSandbox>();
  readonly calls: string[] = [];
  /** What a failing checkpoint does to the sandbox before it reports the failure. */
  onCheckpointFailure: 'keeps-running' | 'saves-and-stops' = 'keeps-running';
  private nextPid = 10_000;

  constructor(private readonly faults: Faults) {}

  pidAlive = (pid: number): boolean => [...this.sandboxes.values()].some((s) => s.pid === pid && s.alive);

  /** The sandbox's process dies on its own (a host OOM kill, say). */
  kill(id: string): void {
    const sandbox = this.sandboxes.get(id);
    if (sandbox) sandbox.alive = false;
  }

  async create(spec: RuntimeSandboxSpec): Promise<{ pid: number }> {
    return this.start('create', spec.id);
  }

  async restore(spec: RuntimeSandboxSpec, imageDir: string): Promise<{ pid: number }> {
    this.calls.push(`restore ${spec.id} from ${path.basename(imageDir)}`);
    return this.start('restore', spec.id);
  }

  private async start(what: 'create' | 'restore', id: string): Promise<{ pid: number }> {
    if (what === 'create') this.calls.push(`create ${id}`);
    // A start that fails halfway leaves runtime state behind: destroy must clean it.
    this.sandboxes.set(id, { pid: 0, alive: false, frozen: false });
    await this.faults.at(`runtime.${what}`);
    const pid = this.nextPid++;
    this.sandboxes.set(id, { pid, alive: true, frozen: false });
    return { pid };
  }

  exitReason(): Promise<string> {
    return Promise.resolve('out of memory: the sandbox went past its memory limit');
  }

  hasExited(id: string): Promise<boolean> {
    return Promise.resolve(!this.sandboxes.get(id)?.alive);
  }

  wasOomKilled(): Promise<boolean> {
    return Promise.resolve(false);
  }

  checkpointSupport(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  async checkpoint(id: string, imageDir: string): Promise<void> {
    this.calls.push(`checkpoint ${id}`);
    const sandbox = this.sandboxes.get(id);
    await mkdir(imageDir, { recursive: true });
    try {
      await this.faults.at('runtime.checkpoint');
    } catch (err) {
      if (this.onCheckpointFailure === 'saves-and-stops') {
        await writeFile(path.join(imageDir, 'checkpoint.img'), `memory of ${id}`);
        if (sandbox) sandbox.alive = false;
      }
      throw err;
    }
    await writeFile(path.join(imageDir, 'checkpoint.img'), `memory of ${id}`);
    if (sandbox) sandbox.alive = false;
  }

  async signal(id: string, signal: NodeJS.Signals): Promise<void> {
    this.calls.push(`signal ${id} ${signal}`);
    await this.faults.at(`runtime.signal.${signal}`);
    if (!this.sandboxes.get(id)?.alive) throw new Error(`sandbox ${id} is not running`);
  }

  async freeze(id: string): Promise<void> {
    await this.faults.at('runtime.freeze');
    const sandbox = this.sandboxes.get(id);
    if (sandbox) sandbox.frozen = true;
  }

  async thaw(id: string): Promise<void> {
    this.calls.push(`thaw ${id}`);
    await this.faults.at('runtime.thaw');
    const sandbox = this.sandboxes.get(id);
    if (sandbox) sandbox.frozen = false;
  }

  stats(): Promise<RuntimeStats> {
    return Promise.resolve({ cpuNs: 0, memUsedBytes: 0 });
  }

  /** Memory watches in force, by sandbox; a test calls `onCross` as the kernel would. */
  readonly memoryWatches = new Map<string, { memoryMb: number; headroomMb: number; onCross: () => void }>();
  /** What `memory` answers, by sandbox (default: nothing in use). */
  readonly memoryUse = new Map<string, RuntimeMemory>();
  cacheReclaims = 0;

  /** Each sandbox's CPU limit in vCPUs, once set. */
  readonly cpuLimits = new Map<string, number>();

  async limitCpu(id: string, vcpus: number): Promise<void> {
    this.calls.push(`limitCpu ${id} ${vcpus}`);
    await this.faults.at('runtime.limitCpu');
    this.cpuLimits.set(id, vcpus);
  }

  async watchMemory(id: string, memoryMb: number, headroomMb: number, onCross: () => void): Promise<void> {
    await this.faults.at('runtime.watchMemory');
    this.memoryWatches.set(id, { memoryMb, headroomMb, onCross });
  }

  unwatchMemory(id: string): Promise<void> {
    this.memoryWatches.delete(id);
    return Promise.resolve();
  }

  memory(id: string): Promise<RuntimeMemory | undefined> {
    if (!this.sandboxes.has(id)) return Promise.resolve(undefined);
    return Promise.resolve(this.memoryUse.get(id) ?? { chargedBytes: 0, inUseBytes: 0 });
  }

  reclaimCache(id: string): Promise<void> {
    this.cacheReclaims++;
    const use = this.memoryUse.get(id);
    if (use) this.memoryUse.set(id, { ...use, chargedBytes: use.inUseBytes });
    return Promise.resolve();
  }

  async destroy(id: string): Promise<void> {
    await this.faults.at('runtime.destroy');
    this.memoryWatches.delete(id);
    this.sandboxes.delete(id);
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.sandboxes.keys()]);
  }

  inspect(id: string): Promise<RuntimeSandboxState | undefined> {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) return Promise.resolve(undefined);
    const status = !sandbox.alive ? 'stopped' : sandbox.frozen ? 'paused' : 'running';
    return Promise.resolve({ status, pid: sandbox.pid });
  }

  waitForCommands(): Promise<boolean> {
    return Promise.resolve(true);
  }

  removeLeftovers(keep: ReadonlySet<string> = new Set()): Promise<void> {
    for (const id of this.sandboxes.keys()) if (!keep.has(id)) this.sandboxes.delete(id);
    return Promise.resolve();
  }
}

export class FakeNetwork implements SlotNetworkPort {
  /** Slot indexes whose namespace exists. */
  readonly prepared = new Set<number>();

  constructor(private readonly faults: Faults) {}

  async prepare(slot: NetworkSlot): Promise<void> {
    if (this.prepared.has(slot.index)) throw new Error(`netns ${slot.netnsName} exists`);
    // Half-made: the namespace exists before a later step fails.
    this.prepared.add(slot.index);
    await this.faults.at('network.prepare');
  }

  async activate(): Promise<void> {
    await this.faults.at('network.activate');
  }

  /** Each slot's egress policy as last applied. */
  readonly egress = new Map<number, EgressPolicy | undefined>();

  async applyEgress(slot: NetworkSlot, policy: EgressPolicy | undefined): Promise<void> {
    await this.faults.at('network.egress');
    this.egress.set(slot.index, policy);
  }

  async release(slot: NetworkSlot): Promise<void> {
    await this.faults.at('network.release');
    this.prepared.delete(slot.index);
  }
}

/** Real files under a temporary data dir; mounts are only remembered. */
export class FakeStorage implements SandboxStorage {
  /** Sandbox dirs whose rootfs is mounted. */
  readonly mounted = new Set<string>();

  constructor(private readonly faults: Faults) {}

  async create(paths: SandboxPaths): Promise<void> {
    await writeFile(paths.diskImage, 'layer');
    this.mounted.add(paths.dir);
    await this.faults.at('storage.create');
  }

  async mount(paths: SandboxPaths): Promise<void> {
    this.mounted.add(paths.dir);
    await this.faults.at('storage.mount');
  }

  async unmount(paths: SandboxPaths): Promise<void> {
    await this.faults.at('storage.unmount');
    this.mounted.delete(paths.dir);
  }

  async destroy(paths: SandboxPaths): Promise<void> {
    await this.faults.at('storage.destroy');
    this.mounted.delete(paths.dir);
    await rm(paths.dir, { recursive: true, force: true });
  }

  async copyDiskImage(from: string, to: string, signal?: AbortSignal): Promise<void> {
    await this.faults.at('storage.copyDiskImage');
    signal?.throwIfAborted();
    await copyFile(from, to);
  }

  async copyTree(_from: string, to: string, signal?: AbortSignal): Promise<void> {
    await writeFile(path.join(to, 'partial'), 'x');
    await this.faults.at('storage.copyTree');
    signal?.throwIfAborted();
  }
}

export class FakeEnvd {
  closed = false;
  /** The bodies of its `/init` calls. */
  readonly inits: EnvdInit[] = [];

  constructor(
    readonly host: string,
    readonly token: string,
    private readonly faults: Faults,
    private readonly listening: () => boolean,
  ) {}

  async waitHealthy(
    _timeoutMs: number,
    _signal?: AbortSignal,
    _hasExited?: () => Promise<boolean>,
    onRefused?: () => Promise<void>,
  ): Promise<void> {
    if (!this.listening() && onRefused) await onRefused();
    await this.faults.at('envd.waitHealthy');
  }

  async init(body: EnvdInit): Promise<void> {
    this.inits.push(body);
    await this.faults.at('envd.init');
  }

  /** What each `/oom-kill` finds to kill, in turn (then nothing); `onKill` plays the memory freed. */
  readonly oomVictims: { pid: number; command: string; rssBytes: number }[] = [];
  onOomKill: (victim: { pid: number; rssBytes: number }) => void = () => undefined;

  async oomKill(): Promise<{ pid: number; command: string; rssBytes: number } | undefined> {
    await this.faults.at('envd.oomKill');
    const victim = this.oomVictims.shift();
    if (victim) this.onOomKill(victim);
    return victim;
  }

  close(): void {
    this.closed = true;
  }
}

export class FakeGuest implements GuestPort {
  readonly clients: FakeEnvd[] = [];

  constructor(private readonly faults: Faults) {}

  connect(host: string, token: string): EnvdClient {
    const envd = new FakeEnvd(host, token, this.faults, () => this.listening);
    this.clients.push(envd);
    // The lifecycle only waits for, initialises and closes a client: the rest of EnvdClient is unused.
    return envd as unknown as EnvdClient;
  }

  /** Whether a restored envd answers on its port: a restore wakes it with SIGUSR1 only when not. */
  listening = false;

  async sync(): Promise<void> {
    await this.faults.at('guest.sync');
  }

  warmUps = 0;

  async warmUp(): Promise<void> {
    this.warmUps++;
    await this.faults.at('guest.warmUp');
  }

  get open(): FakeEnvd[] {
    return this.clients.filter((c) => !c.closed);
  }
}

export interface FakeHost {
  manager: SandboxManager;
  faults: Faults;
  runtime: FakeRuntime;
  network: FakeNetwork;
  storage: FakeStorage;
  guest: FakeGuest;
  slots: SlotAllocator;
  layout: DataLayout;
  templates: TemplateStore;
  deps: LifecycleDeps;
  cleanup(): Promise<void>;
}

/** A manager over fakes, with a real template store on a temporary data dir holding an image `base`. */
export async function fakeHost(
  root?: string,
  opts: { logger?: Logger; preparedSlots?: number } = {},
): Promise<FakeHost> {
  const dir = root ?? (await mkdtemp(path.join(tmpdir(), 'wrenn-lifecycle-')));
  const layout = new DataLayout(dir);
  await mkdir(layout.imageRootfs('base'), { recursive: true });
  await mkdir(layout.sandboxesDir, { recursive: true });
  const faults = new Faults();
  const runtime = new FakeRuntime(faults);
  const network = new FakeNetwork(faults);
  const storage = new FakeStorage(faults);
  const guest = new FakeGuest(faults);
  const slots = new SlotAllocator(8);
  const templates = new TemplateStore(layout);
  const config = {
    dataDir: dir,
    imagesDir: layout.imagesDir,
    nameservers: ['192.0.2.53'],
    maxSandboxes: 8,
    pidsLimit: 256,
    slotSubnet: { base: 0x0a0c0000, prefix: 16 },
    nodePath: '/fake/node',
    tiniPath: '/fake/tini',
    envdDir: '/fake/envd',
    preparedSlots: opts.preparedSlots ?? 0,
  } as AgentConfig;
  const manager = new SandboxManager({
    config,
    layout,
    templates,
    runtime,
    network,
    slots,
    storage,
    guest,
    pidAlive: runtime.pidAlive,
    logger: opts.logger ?? silentLogger(),
  });
  return {
    manager,
    faults,
    runtime,
    network,
    storage,
    guest,
    slots,
    layout,
    templates,
    deps: manager.ctx.deps,
    cleanup: async () => {
      // A pause's teardown (and the manifest after it) goes on after the pause answered.
      await Promise.allSettled(manager.ctx.registry.records().map((r) => r.teardown ?? Promise.resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const BASE = { template: 'base', env: {}, metadata: {}, timeoutSec: 0 };

/** What the host holds for sandboxes, to compare with `NOTHING_HELD` (or a paused sandbox's share). */
export function held(h: FakeHost) {
  return {
    runtimes: [...h.runtime.sandboxes.keys()],
    netns: [...h.network.prepared],
    slots: h.slots.inUse,
    mounts: h.storage.mounted.size,
    envdClients: h.guest.open.length,
  };
}

export const NOTHING_HELD = { runtimes: [], netns: [], slots: 0, mounts: 0, envdClients: 0 };
