import type { Logger } from '@wrenn/core';
import type { SandboxManager } from '../sandbox/manager.js';

const INTERVAL_MS = 1000;

/**
 * Notices sandboxes that died without being asked to (a memory limit enforced by the host's OOM
 * killer, a runtime crash) within a second, so their callers get the reason instead of a hang.
 */
export class SandboxWatchdog {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly manager: SandboxManager,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.manager
        .reapDead()
        .catch((err: unknown) => this.logger.error({ err }, 'watchdog pass failed'))
        .finally(() => (this.running = undefined));
    }, INTERVAL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
