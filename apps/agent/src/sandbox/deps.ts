import path from 'node:path';
import { exec, type EgressPolicy, type Logger } from '@wrenn/core';
import { ENVD_PORT } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import type { NetworkSlot } from '../network/addresses.js';
import type { SlotAllocator } from '../network/slot-allocator.js';
import type { RuntimeDriver } from '../runtime/driver.js';
import type { DataLayout, SandboxPaths } from '../storage/layout.js';
import { copyDiskImage, createRootfs, destroyRootfs, mountRootfs, unmountRootfs } from '../storage/rootfs.js';
import type { Template, TemplateStore } from '../storage/templates.js';
import { runCommand } from './commands.js';
import { EnvdClient } from './envd-client.js';

/**
 * What the sandbox lifecycle needs from the host, as narrow interfaces: production passes the real
 * thing (`hostStorage`, `envdGuest`, the gVisor driver…), the lifecycle's unit tests pass fakes.
 */
export interface LifecycleDeps {
  config: AgentConfig;
  layout: DataLayout;
  templates: TemplateSource;
  runtime: RuntimeDriver;
  network: SlotNetworkPort;
  slots: SlotAllocator;
  storage: SandboxStorage;
  guest: GuestPort;
  /** The bundled Node.js runtime that imported images start envd on (storage/envd-runtime.ts). */
  envdRuntime: { ensure(): Promise<string> };
  /** Whether a host process exists (a sandbox's runtime process, watched for death). */
  pidAlive: (pid: number) => boolean;
  logger: Logger;
}

/** A sandbox's disk: its layer image and the mounts over its template (storage/rootfs.ts). */
export interface SandboxStorage {
  create(paths: SandboxPaths, lowerDir: string, diskMb: number): Promise<void>;
  mount(paths: SandboxPaths, lowerDir: string): Promise<void>;
  /** Unmounts, keeping the layer image (a paused sandbox). */
  unmount(paths: SandboxPaths, logger: Logger): Promise<void>;
  /** Unmounts and deletes the sandbox's whole directory. Idempotent. */
  destroy(paths: SandboxPaths, logger: Logger): Promise<void>;
  copyDiskImage(from: string, to: string, signal?: AbortSignal): Promise<void>;
  /** Copies a mounted root filesystem into `to` as one plain tree (flatten); cancellable. */
  copyTree(from: string, to: string, signal?: AbortSignal): Promise<void>;
}

export type TemplateSource = Pick<
  TemplateStore,
  'resolve' | 'imageRootfs' | 'assertNameFree' | 'stage' | 'all' | 'delete' | 'receive' | 'exportable'
>;

export type { Template };

/** One slot's network namespace (network/slot-network.ts). */
export interface SlotNetworkPort {
  prepare(slot: NetworkSlot): Promise<void>;
  activate(slot: NetworkSlot): Promise<void>;
  /** The sandbox's egress policy (undefined: none), in force when this answers. */
  applyEgress(slot: NetworkSlot, policy: EgressPolicy | undefined, rewrite?: boolean): Promise<void>;
  release(slot: NetworkSlot): Promise<void>;
}

/** The agent's side of envd inside a sandbox. */
export interface GuestPort {
  connect(host: string, token: string, logger: Logger): EnvdClient;
  /** Flushes what the guest's kernel caches to the sandbox's layer. */
  sync(envd: EnvdClient, signal?: AbortSignal): Promise<void>;
  /**
   * Runs one trivial command the way the e2b SDK runs every command (`/bin/bash -l -c`, as the
   * default user), so the first command a user runs finds envd's exec path, the shell and its login
   * files warm (a pooled sandbox's first command was ~150 ms against ~60 for later ones,
   * bench:ttfc). An image without bash gets `/bin/true` instead.
   */
  warmUp(envd: EnvdClient, signal?: AbortSignal): Promise<void>;
}

export const hostStorage: SandboxStorage = {
  create: createRootfs,
  mount: mountRootfs,
  unmount: unmountRootfs,
  destroy: destroyRootfs,
  copyDiskImage,
  async copyTree(from, to, signal) {
    // A big rootfs takes minutes; the caller's signal (the RPC's) ends it early.
    await exec(['cp', '-a', '--sparse=always', `${from}/.`, to], { timeoutMs: 1_800_000, signal });
  },
};

export const envdGuest: GuestPort = {
  connect: (host, token, logger) => new EnvdClient(host, ENVD_PORT, token, logger),
  sync: (envd, signal) => runToSuccess(envd, '/bin/sync', ['-f', '/'], 'root', signal),
  // As envd's default user, as a user's first command runs.
  async warmUp(envd, signal) {
    try {
      await runToSuccess(envd, '/bin/bash', ['-l', '-c', 'true'], '', signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      await runToSuccess(envd, '/bin/true', [], '', signal);
    }
  },
};

async function runToSuccess(
  envd: EnvdClient,
  cmd: string,
  args: string[],
  user: string,
  signal?: AbortSignal,
): Promise<void> {
  const run = runCommand(
    envd,
    {
      cmd,
      args,
      env: {},
      cwd: '/',
      user,
      timeoutMs: 60_000,
      stdin: new Uint8Array(),
      interactive: false,
    },
    signal,
  );
  for await (const ev of run) {
    if (ev.type === 'exited' && ev.exitCode !== 0)
      throw new Error(`${path.basename(cmd)} exited with ${ev.exitCode}`);
  }
}

/**
 * Whether a process exists. Only a real pid counts: `kill(0, 0)` signals the caller's own process
 * group and always succeeds, so a missing pid must never reach it.
 */
export function processAlive(pid: number | undefined): boolean {
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
