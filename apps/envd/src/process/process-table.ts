import { Code, ConnectError, type Logger } from '@wrenn/core';
import type { process as processpb } from '@wrenn/contracts';
import type { ManagedProcess } from './managed-process.js';
import { signalProcessGroup } from './signal-group.js';

/** The processes envd started, by pid, including finished ones still kept for late subscribers. */
export class ProcessTable {
  private readonly byPid = new Map<number, ManagedProcess>();

  constructor(
    private readonly retentionMs: number,
    private readonly logger: Logger,
  ) {}

  add(proc: ManagedProcess): void {
    // A pid can only be reused once the old process was reaped, so an entry with the same pid is a
    // finished process: the new one replaces it.
    this.byPid.set(proc.pid, proc);
    proc.setForgetPolicy(this.retentionMs, () => {
      if (this.byPid.get(proc.pid) !== proc) return;
      this.byPid.delete(proc.pid);
      this.logger.debug({ processPid: proc.pid }, 'forgot finished process');
    });
  }

  /** Running processes, oldest first. */
  running(): ManagedProcess[] {
    return [...this.byPid.values()].filter((p) => !p.hasEnded);
  }

  /**
   * The process a selector names. By tag, a running process wins over a finished one, and the
   * newest over older ones.
   * @throws ConnectError(NotFound)
   */
  find(selector: processpb.ProcessSelector | undefined): ManagedProcess {
    const sel = selector?.selector;
    switch (sel?.case) {
      case 'pid': {
        const proc = this.byPid.get(sel.value);
        if (!proc) throw new ConnectError(`process with pid ${sel.value} not found`, Code.NotFound);
        return proc;
      }
      case 'tag': {
        const matches = [...this.byPid.values()].filter((p) => p.tag === sel.value);
        const best = matches.sort((a, b) => rank(b) - rank(a))[0];
        if (!best) throw new ConnectError(`process with tag ${sel.value} not found`, Code.NotFound);
        return best;
      }
      case undefined:
        throw new ConnectError('process selector is empty', Code.InvalidArgument);
    }
  }

  /** Like find, but a finished process counts as gone (what E2B answers for input and signals). */
  findRunning(selector: processpb.ProcessSelector | undefined): ManagedProcess {
    const proc = this.find(selector);
    if (proc.hasEnded) throw new ConnectError(`process with pid ${proc.pid} not found`, Code.NotFound);
    return proc;
  }

  killAll(): void {
    for (const proc of this.running()) {
      signalProcessGroup(proc.pid, 'SIGKILL');
    }
  }
}

function rank(p: ManagedProcess): number {
  return (p.hasEnded ? 0 : 1e15) + p.startedAt;
}
