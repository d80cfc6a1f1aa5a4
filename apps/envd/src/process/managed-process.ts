import { create } from '@bufbuild/protobuf';
import { process as processpb } from '@wrenn/contracts';
import { Code, ConnectError, type Logger } from '@wrenn/core';
import { exitStatus } from './exit-status.js';
import type { LaunchPlan } from './launch.js';
import { spawnPipeProcess, type PipeSpawner } from './pipe-process.js';
import type { OutputKind, ProcessIo } from './process-io.js';
import { spawnPtyProcess } from './pty-process.js';
import { ReplayBuffer } from './replay-buffer.js';
import { signalProcessGroup } from './signal-group.js';

type ProcessEvent = processpb.ProcessEvent;

// Accounting per buffered chunk beyond its bytes, so a flood of tiny chunks is bounded too.
const chunkOverheadBytes = 64;

export interface ManagedProcessOptions {
  /** The request's config, echoed by List. */
  config: processpb.ProcessConfig;
  tag: string | undefined;
  pty: { cols: number; rows: number } | undefined;
  stdin: boolean;
  /** Starts a non-PTY process; Node's spawn unless the fork-server does it. */
  spawnPipe?: PipeSpawner;
  /** Kill the process after this long (Connect-Timeout-Ms of Start); undefined = no limit. */
  lifetimeMs: number | undefined;
  bufferBytes: number;
  logger: Logger;
}

/**
 * A process started by envd. Its events (start, output, end) go into a bounded replay buffer that
 * any number of subscribers read at their own pace; see ReplayBuffer for the backpressure rules.
 * The process outlives every subscriber: only its exit, a signal or its lifetime end it.
 */
export class ManagedProcess {
  readonly startedAt = Date.now();
  readonly config: processpb.ProcessConfig;
  readonly tag: string | undefined;
  private io!: ProcessIo;
  private startEvent!: ProcessEvent;
  private logger: Logger;
  private endEvent: ProcessEvent | undefined;
  private readonly output: ReplayBuffer<ProcessEvent>;
  private lifetimeTimer: NodeJS.Timeout | undefined;
  private subscribers = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private onForget: (() => void) | undefined;
  private forgetAfterMs = 0;

  private constructor(opts: ManagedProcessOptions) {
    this.config = opts.config;
    this.tag = opts.tag;
    this.logger = opts.logger;
    this.output = new ReplayBuffer<ProcessEvent>({
      capBytes: opts.bufferBytes,
      onPressure: (isFull) => (isFull ? this.io.pauseOutput() : this.io.resumeOutput()),
    });
  }

  static async start(plan: LaunchPlan, opts: ManagedProcessOptions): Promise<ManagedProcess> {
    const proc = new ManagedProcess(opts);
    // Output and exit are only delivered from later event-loop turns, after attach() ran.
    const events = {
      onOutput: (kind: OutputKind, chunk: Buffer) => proc.handleOutput(kind, chunk),
      onExit: (code: number | null, signal: NodeJS.Signals | number | null) => proc.handleExit(code, signal),
    };
    const io = opts.pty
      ? await spawnPtyProcess(plan, opts.pty, events)
      : await (opts.spawnPipe ?? spawnPipeProcess)(plan, { stdin: opts.stdin }, events);
    proc.attach(io);
    if (opts.lifetimeMs !== undefined && opts.lifetimeMs > 0) proc.setLifetime(opts.lifetimeMs);
    proc.logger.info({ cmd: plan.file, args: plan.args, cwd: plan.cwd, isPty: io.isPty }, 'process started');
    return proc;
  }

  get pid(): number {
    return this.io.pid;
  }

  get isPty(): boolean {
    return this.io.isPty;
  }

  get hasEnded(): boolean {
    return this.endEvent !== undefined;
  }

  /**
   * The process's events for one subscriber: start first, then the retained and live output in
   * order, then end. Reading is paced by the consumer.
   */
  async *events(signal: AbortSignal): AsyncGenerator<ProcessEvent, void, undefined> {
    this.subscribers++;
    clearTimeout(this.idleTimer);
    try {
      yield this.startEvent;
      yield* this.output.read(signal);
      if (this.endEvent) yield this.endEvent;
    } finally {
      this.subscribers--;
      this.scheduleForget();
    }
  }

  async write(data: Uint8Array): Promise<void> {
    this.assertRunning();
    await this.io.write(data);
  }

  closeStdin(): void {
    this.assertRunning();
    this.io.closeStdin();
  }

  resize(cols: number, rows: number): void {
    this.assertRunning();
    if (!this.isPty) throw new ConnectError('process has no PTY', Code.FailedPrecondition);
    this.io.resize(cols, rows);
  }

  signal(sig: NodeJS.Signals): void {
    this.assertRunning();
    // ESRCH is swallowed: it exited and was reaped, and its end event is on the way.
    signalProcessGroup(this.pid, sig);
  }

  /** Forget this process `ms` after it ended and its last subscriber left. */
  setForgetPolicy(ms: number, onForget: () => void): void {
    this.forgetAfterMs = ms;
    this.onForget = onForget;
    this.scheduleForget();
  }

  private setLifetime(ms: number): void {
    this.lifetimeTimer = setTimeout(() => {
      if (this.hasEnded) return;
      this.logger.info({ lifetimeMs: ms }, 'process lifetime (Connect-Timeout-Ms) elapsed, killing it');
      signalProcessGroup(this.pid, 'SIGKILL');
    }, ms);
  }

  private assertRunning(): void {
    if (this.hasEnded) throw new ConnectError(`process with pid ${this.pid} not found`, Code.NotFound);
  }

  private handleOutput(kind: OutputKind, chunk: Buffer): void {
    const event = create(processpb.ProcessEventSchema, {
      event: { case: 'data', value: { output: { case: kind, value: chunk } } },
    });
    this.output.append(event, chunk.length + chunkOverheadBytes);
  }

  private attach(io: ProcessIo): void {
    this.io = io;
    this.startEvent = create(processpb.ProcessEventSchema, {
      event: { case: 'start', value: { pid: io.pid } },
    });
    this.logger = this.logger.child({ processPid: io.pid, ...(this.tag ? { tag: this.tag } : {}) });
  }

  private handleExit(code: number | null, signal: NodeJS.Signals | number | null): void {
    if (this.endEvent) return;
    clearTimeout(this.lifetimeTimer);
    const status = exitStatus(code, signal);
    this.endEvent = create(processpb.ProcessEventSchema, { event: { case: 'end', value: status } });
    this.output.close();
    this.logger.info({ status: status.status }, 'process ended');
    this.scheduleForget();
  }

  private scheduleForget(): void {
    clearTimeout(this.idleTimer);
    if (!this.hasEnded || this.subscribers > 0 || !this.onForget) return;
    const onForget = this.onForget;
    this.idleTimer = setTimeout(onForget, this.forgetAfterMs);
    this.idleTimer.unref();
  }
}
