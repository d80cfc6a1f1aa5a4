import { errorMessage, type Logger } from '@wrenn/core';
import {
  ControlPlaneRefusal,
  type ControlPlaneApi,
  type HeartbeatRequest,
} from '../fleet/control-plane-client.js';
import { pauseAll, type PausableSandboxes, type Supervision } from '../fleet/pause-all.js';
import type { HostSession } from '../fleet/token-refresh.js';

export interface HeartbeatDeps {
  session: Pick<HostSession, 'accessToken' | 'refresh' | 'refreshDue'>;
  api: Pick<ControlPlaneApi, 'heartbeat'>;
  report: () => Promise<HeartbeatRequest>;
  sandboxes: PausableSandboxes;
  supervision: Supervision;
  logger: Logger;
}

/**
 * One heartbeat: credentials renewed first when due, then the report; a 401/403 means the access
 * token is no longer taken: refresh, then send once more. Returns the interval the control plane
 * asks for, if it says.
 */
export async function sendHeartbeat(deps: HeartbeatDeps, signal?: AbortSignal): Promise<number | undefined> {
  const { session, api } = deps;
  if (session.refreshDue()) await session.refresh();
  const report = await deps.report();
  try {
    return (await api.heartbeat(session.accessToken, report, signal)).heartbeat_interval_sec;
  } catch (err) {
    if (!(err instanceof ControlPlaneRefusal)) throw err;
    await session.refresh();
    return (await api.heartbeat(session.accessToken, report, signal)).heartbeat_interval_sec;
  }
}

/**
 * One pass of the heartbeat loop: a heartbeat; when heartbeats have failed for the grace period,
 * every running sandbox is paused (PauseAll). Never throws: the loop keeps trying.
 */
export async function heartbeatPass(deps: HeartbeatDeps, signal?: AbortSignal): Promise<number | undefined> {
  const { supervision, logger } = deps;
  try {
    const interval = await sendHeartbeat(deps, signal);
    if (supervision.heartbeatSucceeded()) logger.info('the control plane answers again');
    return interval;
  } catch (err) {
    // The agent is stopping: a heartbeat cut short says nothing about the control plane.
    if (signal?.aborted) return undefined;
    const refused = err instanceof ControlPlaneRefusal;
    const lost = supervision.heartbeatFailed();
    logger.warn(
      { err: errorMessage(err), refused },
      refused
        ? 'heartbeat refused and refresh refused (host revoked or deleted? register it anew)'
        : 'heartbeat failed',
    );
    if (lost) {
      const paused = await pauseAll(deps.sandboxes, logger);
      for (const id of paused) supervision.pausedUnsupervised.add(id);
      if (paused.length) logger.warn({ paused }, 'PauseAll: heartbeats failed for the grace period');
    }
    return undefined;
  }
}

/**
 * Runs `heartbeatPass` every `intervalSec` (or more often when the control plane asks for a shorter
 * interval: it decides when a host is stale), one pass at a time; `stop` waits for the pass in flight.
 */
export class HeartbeatLoop {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private readonly stopping = new AbortController();
  private intervalSec: number;

  constructor(
    private readonly deps: HeartbeatDeps,
    private readonly configuredSec: number,
    askedSec?: number,
  ) {
    this.intervalSec = intervalOf(configuredSec, askedSec);
  }

  start(): this {
    this.schedule(0);
    return this;
  }

  /** Stops the loop; a heartbeat in flight is cut short (a PauseAll in flight finishes). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopping.abort();
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = heartbeatPass(this.deps, this.stopping.signal).then((asked) => {
        this.intervalSec = intervalOf(this.configuredSec, asked ?? this.intervalSec);
        this.running = undefined;
        this.schedule(this.intervalSec * 1000);
      });
    }, delayMs);
    this.timer.unref();
  }
}

function intervalOf(configuredSec: number, askedSec: number | undefined): number {
  return askedSec && askedSec > 0 ? Math.min(configuredSec, askedSec) : configuredSec;
}
