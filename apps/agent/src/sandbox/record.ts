import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { EgressPolicy } from '@wrenn/core';
import type { NetworkSlot } from '../network/addresses.js';
import type { SandboxPaths } from '../storage/layout.js';
import { MetricTiers } from '../metrics/tiers.js';
import type { EnvdClient } from './envd-client.js';
import type { SandboxState } from './state.js';

export type SandboxStatus = 'pending' | 'running' | 'paused' | 'stopped' | 'error';

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
  /** Seconds of inactivity before the agent pauses the sandbox; 0 = never. */
  timeoutSec: number;
  /** Paused by the inactivity timer rather than by a caller. */
  autoPaused: boolean;
  lastActiveAt: Date;
  pausedAt?: Date;
  /** Processes killed because the sandbox went past its memory (it lived on; memory-guard.ts). */
  oomKills?: number;
  lastOomKill?: OomKill;
}

/** A process the agent killed when its sandbox went past its memory. */
export interface OomKill {
  at: Date;
  pid: number;
  /** Its command line (cut at 512 characters). */
  command: string;
  /** Its resident memory when it was chosen. */
  memoryBytes: number;
}

export interface CreateSandboxParams {
  id?: string;
  template: string;
  /** Unset = the template's (a snapshot's sizes are fixed) or the agent's default. */
  vcpus?: number;
  memoryMb?: number;
  diskMb?: number;
  env: Record<string, string>;
  metadata: Record<string, string>;
  timeoutSec: number;
  /** What envd's commands default to (a built template's USER and WORKDIR); unset = envd's own. */
  defaultUser?: string;
  defaultWorkdir?: string;
  /** What the sandbox may reach (docs/network.md); unset: no policy of its own. */
  egress?: EgressPolicy;
}

/** Everything the agent holds for one sandbox. */
export interface SandboxRecord {
  /** Changed only by `transition` (state.ts), which keeps `info.status` in step. */
  state: SandboxState;
  info: SandboxInfo;
  paths: SandboxPaths;
  /**
   * The runtime's name for the sandbox (runsc container, cgroups) and its directory's name under
   * `sandboxes/`. The sandbox's id, except for one claimed from a warm pool: that keeps the name it
   * was made under (`pool-…`, never a valid sandbox id) for its whole life on this host.
   */
  runtimeId: string;
  /** The image template whose rootfs lies below the sandbox's layer. */
  baseImage: string;
  /** envd's access token: only the agent (and whoever it hands the token to) may drive envd. */
  accessToken: string;
  slot?: NetworkSlot;
  /** Its egress policy, applied to every slot it gets (create, resume, adoption). */
  egress?: EgressPolicy;
  envd?: EnvdClient;
  /** Host pid of the runtime's sandbox process, watched for unexpected death. */
  pid?: number;
  /** Aborted when the sandbox stops running (pause, destroy, death): cancels calls in flight. */
  lifetime: AbortController;
  /** Operations that change a sandbox's state run one at a time, in order of arrival. */
  queue: Promise<unknown>;
  /** Calls in flight (a long exec stream is activity for as long as it runs). */
  activeCalls: number;
  lastActive: number;
  metrics: MetricTiers;
  cpuMark?: { ns: number; at: number };
  /** Freeing the runtime, slot and mounts after a pause answered; later operations wait for it. */
  teardown?: Promise<void>;
  /** Releasing the sandbox's resources while it is `stopping` (destroy, death): others wait for it. */
  releasing?: Promise<void>;
}

export function newRecord(
  state: 'creating' | 'paused',
  info: SandboxInfo,
  paths: SandboxPaths,
  baseImage: string,
  accessToken: string,
): SandboxRecord {
  return {
    state,
    info: { ...info, status: state === 'creating' ? 'pending' : 'paused' },
    paths,
    runtimeId: path.basename(paths.dir),
    baseImage,
    accessToken,
    lifetime: new AbortController(),
    queue: Promise.resolve(),
    activeCalls: 0,
    lastActive: Date.now(),
    metrics: new MetricTiers(),
  };
}

/**
 * What a sandbox's directory records (`sandbox.json`), so an agent that restarts can take it over: a
 * running one is adopted where it runs (its runtime, slot and mounts outlive the agent), a paused one
 * resumed from its checkpoint. Written atomically (a rename) whenever the sandbox enters `running` or
 * `paused`.
 */
interface StoredState {
  info: Omit<SandboxInfo, 'createdAt' | 'lastActiveAt' | 'pausedAt' | 'lastOomKill'> & {
    createdAt: string;
    lastActiveAt: string;
    pausedAt?: string;
    lastOomKill?: Omit<OomKill, 'at'> & { at: string };
  };
  baseImage: string;
  accessToken: string;
  /** A running sandbox's network slot (its runtime's bundle names the namespace too). */
  slotIndex?: number;
  egress?: EgressPolicy;
}

export interface SavedSandbox {
  info: SandboxInfo;
  baseImage: string;
  accessToken: string;
  slotIndex?: number;
  egress?: EgressPolicy;
}

// Writes of one sandbox's record run one after another, each taking the record as it is when its turn
// comes: the last write on disk is always the newest state (a timeout change written beside a pause
// must not land a `running` record after the `paused` one).
const writes = new WeakMap<SandboxRecord, Promise<unknown>>();

/** Records the sandbox as it is now (`running` or `paused`) in its directory. */
export function writeSandboxState(record: SandboxRecord): Promise<void> {
  const run = (writes.get(record) ?? Promise.resolve()).then(
    () => writeNow(record),
    () => writeNow(record),
  );
  writes.set(
    record,
    run.catch(() => undefined),
  );
  return run;
}

async function writeNow(record: SandboxRecord): Promise<void> {
  const { info } = record;
  const state: StoredState = {
    info: {
      ...info,
      createdAt: info.createdAt.toISOString(),
      lastActiveAt: info.lastActiveAt.toISOString(),
      pausedAt: info.pausedAt?.toISOString(),
      lastOomKill: info.lastOomKill && { ...info.lastOomKill, at: info.lastOomKill.at.toISOString() },
    },
    baseImage: record.baseImage,
    accessToken: record.accessToken,
    slotIndex: info.status === 'running' ? record.slot?.index : undefined,
    egress: record.egress,
  };
  const tmp = `${record.paths.stateFile}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 1), { mode: 0o600 });
  await rename(tmp, record.paths.stateFile);
}

export const writePausedState = writeSandboxState;

/** What the directory records, running or paused; undefined when nothing (or nothing readable). */
export async function readSandboxState(paths: SandboxPaths): Promise<SavedSandbox | undefined> {
  const text = await readFile(paths.stateFile, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const state = JSON.parse(text) as StoredState;
  if (state.info.status !== 'paused' && state.info.status !== 'running') return undefined;
  return {
    info: {
      ...state.info,
      envdAddress: '',
      createdAt: new Date(state.info.createdAt),
      lastActiveAt: new Date(state.info.lastActiveAt),
      pausedAt: state.info.pausedAt ? new Date(state.info.pausedAt) : undefined,
      lastOomKill: state.info.lastOomKill && {
        ...state.info.lastOomKill,
        at: new Date(state.info.lastOomKill.at),
      },
    },
    baseImage: state.baseImage,
    accessToken: state.accessToken,
    slotIndex: state.slotIndex,
    egress: state.egress,
  };
}

export async function readPausedState(paths: SandboxPaths): Promise<SavedSandbox | undefined> {
  const state = await readSandboxState(paths);
  return state?.info.status === 'paused' ? state : undefined;
}
