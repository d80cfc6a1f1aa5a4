import { errorMessage, type Logger } from '@wrenn/core';

/**
 * Whether the control plane still supervises this host: heartbeats that fail `grace` times in a row
 * (unreachable, or a refresh refused) mean it does not, and the agent pauses every sandbox
 * (PauseAll): nothing runs unsupervised. While that lasts, each further failure pauses whatever runs
 * again (a resume or create that slipped through). A heartbeat that goes through ends it; the control
 * plane then resumes what it wants.
 */
export class Supervision {
  private failuresInARow = 0;
  /**
   * Sandboxes PauseAll paused, told to the control plane in each heartbeat until they leave
   * `paused`, so that it resumes them: paused for want of supervision, not by anyone's choice.
   */
  readonly pausedUnsupervised = new Set<string>();

  constructor(private readonly grace: number) {}

  get isLost(): boolean {
    return this.failuresInARow >= this.grace;
  }

  /** A heartbeat went through; returns whether supervision was lost until now. */
  heartbeatSucceeded(): boolean {
    const wasLost = this.isLost;
    this.failuresInARow = 0;
    return wasLost;
  }

  /** The sandboxes as a heartbeat reports them: those PauseAll paused marked, the rest forgotten. */
  report(sandboxes: { id: string; status: string }[]): HeartbeatSandbox[] {
    const paused = new Set(sandboxes.filter((s) => s.status === 'paused').map((s) => s.id));
    for (const id of this.pausedUnsupervised) if (!paused.has(id)) this.pausedUnsupervised.delete(id);
    return sandboxes.map(({ id, status }) =>
      this.pausedUnsupervised.has(id) ? { id, status, paused_unsupervised: true } : { id, status },
    );
  }

  /** A heartbeat failed; returns whether the sandboxes are to be paused now. */
  heartbeatFailed(): boolean {
    this.failuresInARow++;
    return this.isLost;
  }
}

export interface HeartbeatSandbox {
  id: string;
  status: string;
  /** PauseAll paused it: the control plane resumes it. */
  paused_unsupervised?: boolean;
}

/** What PauseAll needs of the sandboxes (the SandboxManager). */
export interface PausableSandboxes {
  list(): { id: string; status: string }[];
  pause(id: string): Promise<unknown>;
}

/**
 * Pauses every running sandbox with the lifecycle's own pause (a failed pause leaves the sandbox
 * running; the next failed heartbeat tries again). Returns the ids it paused.
 */
export async function pauseAll(sandboxes: PausableSandboxes, logger: Logger): Promise<string[]> {
  const running = sandboxes.list().filter((s) => s.status === 'running');
  const paused: string[] = [];
  await Promise.all(
    running.map(async ({ id }) => {
      try {
        await sandboxes.pause(id);
        paused.push(id);
        logger.warn({ sandboxId: id }, 'paused: the control plane is out of reach (PauseAll)');
      } catch (err) {
        logger.error({ sandboxId: id, err: errorMessage(err) }, 'PauseAll could not pause a sandbox');
      }
    }),
  );
  return paused;
}
