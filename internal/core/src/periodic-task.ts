import type { Logger } from './logger.js';

/**
 * Runs `pass` every `intervalMs`, never two passes at once (a slow pass delays the next instead of
 * piling up), and only while `when()` holds (e.g. this server leads the cluster). `stop` waits for
 * the pass in flight, so shutdown never cuts one in half.
 */
export class PeriodicTask {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    readonly name: string,
    private readonly intervalMs: number,
    private readonly pass: () => Promise<void>,
    private readonly logger: Logger,
    private readonly when: () => boolean = () => true,
  ) {}

  start(): this {
    this.timer = setInterval(() => {
      if (this.running || !this.when()) return;
      this.running = this.pass()
        .catch((err: unknown) => this.logger.error({ err, task: this.name }, 'periodic pass failed'))
        .finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
