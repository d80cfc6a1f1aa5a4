import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions {
  /** Give up after this long (ms). */
  timeoutMs: number;
  /** Time between two checks (ms). */
  intervalMs: number;
  signal?: AbortSignal;
}

/**
 * Calls `check` until it returns something other than undefined, and returns that; `check` runs
 * at once, then every `intervalMs`. Past `timeoutMs`, resolves to undefined (the caller says what
 * timing out means). An error thrown by `check` ends the wait with that error; an aborted `signal`
 * with its reason.
 */
export async function pollUntil<T>(
  check: () => Promise<T | undefined> | T | undefined,
  { timeoutMs, intervalMs, signal }: PollOptions,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const value = await check();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    await sleep(Math.min(intervalMs, left), undefined, { signal });
  }
}
