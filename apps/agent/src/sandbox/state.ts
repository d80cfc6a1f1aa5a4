import { Code, ConnectError, failedPrecondition } from '@wrenn/core';
import type { SandboxStatus } from './record.js';

/**
 * Where a sandbox is in its life, as the agent tracks it. Finer than the public status: the states in
 * between (pausing, resuming, flattening, stopping) are the ones in which calls are refused.
 */
export type SandboxState =
  | 'creating'
  | 'running'
  | 'pausing'
  | 'paused'
  | 'resuming'
  | 'flattening'
  /** Its resources are being released: destroy, death, or a pause that lost it. */
  | 'stopping'
  /** Released, kept so its owner can read why it stopped, until DestroySandbox. */
  | 'stopped'
  /** Releasing it left work undone; DestroySandbox tries again. */
  | 'error'
  /** Gone from the registry; nothing may happen to it any more. */
  | 'destroyed';

/** Every legal move; anything else is a bug in the agent, not a caller's mistake. */
export const TRANSITIONS: Readonly<Record<SandboxState, readonly SandboxState[]>> = {
  // A failed create rolls back everything it made and leaves no record.
  creating: ['running', 'destroyed'],
  running: ['pausing', 'flattening', 'stopping'],
  // running again: the checkpoint failed and the sandbox was recovered; stopping: it was lost.
  pausing: ['paused', 'running', 'stopping'],
  paused: ['resuming', 'stopping'],
  // paused again: the resume failed, the checkpoint is still there.
  resuming: ['running', 'paused'],
  flattening: ['running'],
  stopping: ['stopped', 'error', 'destroyed'],
  stopped: ['destroyed'],
  error: ['stopping'],
  destroyed: [],
};

const PUBLIC_STATUS: Readonly<Record<SandboxState, SandboxStatus>> = {
  creating: 'pending',
  running: 'running',
  pausing: 'running',
  flattening: 'running',
  paused: 'paused',
  resuming: 'paused',
  stopping: 'stopped',
  stopped: 'stopped',
  error: 'error',
  destroyed: 'stopped',
};

/** What `transition` needs of a record (kept narrow so the table is testable on its own). */
export interface Stateful {
  state: SandboxState;
  info: { id: string; status: SandboxStatus; statusReason: string };
}

export function canTransition(from: SandboxState, to: SandboxState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * The one place a sandbox's state (and its public status) changes. Entering `running` clears the
 * reason; elsewhere `reason` replaces it when given and the old one stays otherwise (a failed resume
 * leaves "paused after 300 s without activity" as it was).
 */
export function transition<R extends Stateful>(record: R, to: SandboxState, reason?: string): void {
  const from = record.state;
  if (!canTransition(from, to)) {
    throw new ConnectError(
      `internal error: sandbox ${record.info.id} cannot go from ${from} to ${to}`,
      Code.Internal,
    );
  }
  record.state = to;
  record.info.status = PUBLIC_STATUS[to];
  if (to === 'running') record.info.statusReason = '';
  else if (reason !== undefined) record.info.statusReason = reason;
}

/** Refuses a call to a sandbox that is not running, naming what it is doing instead. */
export function assertRunning(record: Stateful, what: string): void {
  if (record.state === 'running') return;
  const { info } = record;
  const state = record.state === 'creating' ? 'pending' : record.state;
  const why = info.statusReason ? ` (${info.statusReason})` : '';
  throw failedPrecondition(`cannot ${what} sandbox ${info.id}: it is ${state}, not running${why}`);
}
