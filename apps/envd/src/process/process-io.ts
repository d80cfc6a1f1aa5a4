/** Which output a chunk came from; a PTY merges stdout and stderr into one stream. */
export type OutputKind = 'stdout' | 'stderr' | 'pty';

export interface ProcessIoEvents {
  onOutput(kind: OutputKind, chunk: Buffer): void;
  /** Once, after the last output chunk: the exit code, or the signal that killed the process. */
  onExit(code: number | null, signal: NodeJS.Signals | number | null): void;
}

/**
 * A running child as ManagedProcess drives it. Two backends: pipe-process.ts (plain pipes) and
 * pty-process.ts (a pseudo-terminal from node-pty).
 */
export interface ProcessIo {
  readonly pid: number;
  readonly isPty: boolean;
  /** Stop reading output (the child blocks once the kernel buffer is full) — backpressure. */
  pauseOutput(): void;
  resumeOutput(): void;
  /** Bytes to the child's stdin (pipe) or terminal (pty). Resolves when handed to the kernel. */
  write(data: Uint8Array): Promise<void>;
  /** EOF on stdin; for a PTY, the terminal's EOF character. */
  closeStdin(): void;
  /** @throws Error for a non-PTY process. */
  resize(cols: number, rows: number): void;
}
