import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { errorMessage, type Logger } from '@wrenn/core';

/**
 * cgroup v1 memory thresholds, delivered the moment the kernel charges past them: one
 * `wrenn-memwatch` process (apps/agent/native/memwatch.c) holds an eventfd per watched cgroup and
 * prints a line when one fires. Node.js cannot make an eventfd itself; polling instead would cost CPU
 * for every sandbox all the time and still be late.
 */
export class MemoryThresholds {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly watches = new Map<string, { dir: string; bytes: number; onCross: () => void }>();
  /** Answers awaited, per key, in the order their commands were sent. */
  private readonly pending = new Map<string, { resolve: () => void; reject: (err: Error) => void }[]>();

  constructor(
    private readonly binary: string,
    private readonly logger: Logger,
  ) {}

  /**
   * Calls `onCross` whenever the usage of the memory cgroup `dir` crosses `bytes`, up or down, and
   * once when the cgroup is removed. Replaces an earlier watch of the same key; resolves once armed.
   */
  async watch(key: string, dir: string, bytes: number, onCross: () => void): Promise<void> {
    this.watches.set(key, { dir, bytes, onCross });
    try {
      await this.send(key, `W ${key} ${dir} ${Math.floor(bytes)}`);
    } catch (err) {
      this.watches.delete(key);
      throw err;
    }
  }

  async unwatch(key: string): Promise<void> {
    if (!this.watches.delete(key)) return;
    await this.send(key, `U ${key}`).catch((err: unknown) =>
      this.logger.warn({ key, err: errorMessage(err) }, 'memory watch: unwatch failed'),
    );
  }

  private send(key: string, line: string): Promise<void> {
    if (/\s/.test(key) || line.split(' ').length > 4) throw new Error(`invalid memory watch ${line}`);
    const child = this.started();
    // The helper's process and pipes are unref'd, so while an answer is awaited something must keep
    // the event loop alive: at start-up (adopting a running sandbox, before the agent listens) nothing
    // else does, and Node.js would exit with 0 mid-adoption (found by `npm run chaos`).
    const awaiting = setInterval(() => undefined, 60_000);
    return new Promise<void>((resolve, reject) => {
      const queue = this.pending.get(key) ?? [];
      queue.push({ resolve, reject });
      this.pending.set(key, queue);
      child.stdin.write(`${line}\n`);
    }).finally(() => clearInterval(awaiting));
  }

  private started(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn(this.binary, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    // Never what keeps the agent's process alive.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr])
      (stream as unknown as { unref?: () => void }).unref?.();
    child.stderr.on('data', (b: Buffer) => this.logger.warn({ stderr: b.toString().trim() }, 'memory watch'));
    createInterface({ input: child.stdout }).on('line', (line) => this.onLine(line));
    const gone = (why: string) => {
      if (this.child !== child) return;
      this.child = undefined;
      for (const [, queue] of this.pending)
        for (const p of queue) p.reject(new Error(`wrenn-memwatch ${why}`));
      this.pending.clear();
      if (!this.watches.size) return;
      // Every watch is the kernel's registration on an eventfd that died with the process: re-arm
      // them all, and tell each owner to look (a crossing may have been missed meanwhile).
      this.logger.error({ why, watches: this.watches.size }, 'memory watch helper died; re-arming in 1 s');
      setTimeout(() => {
        for (const [key, w] of [...this.watches]) {
          this.watch(key, w.dir, w.bytes, w.onCross).then(w.onCross, (err: unknown) =>
            this.logger.error({ key, err: errorMessage(err) }, 'memory watch: re-arm failed'),
          );
        }
      }, 1000).unref();
    };
    child.on('error', (err) => gone(`could not run (${this.binary}): ${err.message}`));
    child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    child.stdin.on('error', () => undefined);
    return child;
  }

  private onLine(line: string): void {
    const [kind, key = '', errno] = line.split(' ');
    if (kind === 'X') {
      this.watches.get(key)?.onCross();
      return;
    }
    const waiter = this.pending.get(key)?.shift();
    if (!waiter) {
      this.logger.warn({ line }, 'memory watch: unexpected answer');
      return;
    }
    if (kind === 'OK') waiter.resolve();
    else waiter.reject(new Error(`memory watch of ${key} failed: errno ${errno}`));
  }
}
