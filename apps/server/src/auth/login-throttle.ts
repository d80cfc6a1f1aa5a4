/** How many failed logins one email may have in a sliding window before it is locked out. */
export interface LoginLimit {
  maxFailures: number;
  windowMs: number;
}

export const DEFAULT_LOGIN_LIMIT: LoginLimit = { maxFailures: 10, windowMs: 15 * 60_000 };

/**
 * Failed logins per email, in this process's memory (a restart forgets them; several server processes
 * each count their own). A sliding window: an email that has `maxFailures` failures within the last
 * `windowMs` is refused, whatever the password, until the oldest of them is `windowMs` old.
 *
 * An attempt counts as a failure from the moment it starts and is taken back when its password turns
 * out right, so parallel guesses cannot all slip in while their hashes are being verified.
 */
export class LoginThrottle {
  private readonly failures = new Map<string, number[]>();
  private lastSweep: number;

  constructor(
    private readonly limit: LoginLimit = DEFAULT_LOGIN_LIMIT,
    private readonly now: () => number = Date.now,
  ) {
    this.lastSweep = now();
  }

  /**
   * Starts an attempt for `email`: undefined when it may go ahead (call `succeeded` if the password is
   * right), or the whole seconds until it may try again.
   */
  begin(email: string): { retryAfterSec: number } | undefined {
    const now = this.now();
    this.sweep(now);
    const recent = this.recent(email, now);
    if (recent.length >= this.limit.maxFailures) {
      const until = recent[recent.length - this.limit.maxFailures]! + this.limit.windowMs;
      return { retryAfterSec: Math.max(1, Math.ceil((until - now) / 1000)) };
    }
    recent.push(now);
    this.failures.set(email, recent);
    return undefined;
  }

  /** The password was right: the email's failures are forgotten. */
  succeeded(email: string): void {
    this.failures.delete(email);
  }

  private recent(email: string, now: number): number[] {
    return (this.failures.get(email) ?? []).filter((t) => t > now - this.limit.windowMs);
  }

  // Emails whose failures have all expired are dropped, at most once a window, so the map stays
  // bounded by the emails tried within one window.
  private sweep(now: number): void {
    if (now - this.lastSweep < this.limit.windowMs) return;
    this.lastSweep = now;
    for (const [email, times] of this.failures) {
      if (times.every((t) => t <= now - this.limit.windowMs)) this.failures.delete(email);
    }
  }
}
