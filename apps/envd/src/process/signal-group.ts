/**
 * Signals a process and everything it started in its process group (each process envd starts leads
 * its own session). A shell killed alone would leave its children running: `sleep` outliving the
 * `sh -c` that timed out. ESRCH (all gone already) is not an error.
 */
export function signalProcessGroup(pid: number, signal: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}
