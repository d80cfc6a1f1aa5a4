import { abortError } from './abort.js';

/** E2B envd's default when a client sends no Keepalive-Ping-Interval header. */
export const defaultKeepaliveIntervalSec = 90;

/** The keepalive interval a streaming call asked for, in ms (header value is in seconds). */
export function keepaliveIntervalMs(headers: Headers): number {
  const raw = headers.get('keepalive-ping-interval');
  const sec = raw === null ? Number.NaN : Number(raw);
  return (Number.isFinite(sec) && sec > 0 ? sec : defaultKeepaliveIntervalSec) * 1000;
}

const idle = Symbol('idle');

/**
 * Passes `source` through, inserting `keepalive()` whenever nothing was sent for `intervalMs`, so
 * proxies and clients keep an idle stream open. Ends with the signal's error when it aborts
 * (e.g. deadline_exceeded from Connect-Timeout-Ms).
 *
 * The source's pending next() is kept across keepalives: calling next() again would skip or
 * reorder items.
 */
export async function* withKeepalive<T>(
  source: AsyncIterable<T>,
  keepalive: () => T,
  intervalMs: number,
  signal: AbortSignal,
): AsyncGenerator<T, void, undefined> {
  const it = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  try {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      pending ??= it.next();
      const result = await waitOrIdle(pending, intervalMs, signal);
      if (result === idle) {
        yield keepalive();
        continue;
      }
      pending = undefined;
      if (result.done) return;
      yield result.value;
    }
  } finally {
    if (pending) {
      // An async generator queues return() behind a pending next(); don't wait for it.
      pending.catch(() => undefined);
      void it.return?.()?.catch(() => undefined);
    } else {
      await it.return?.();
    }
  }
}

function waitOrIdle<T>(
  pending: Promise<IteratorResult<T>>,
  intervalMs: number,
  signal: AbortSignal,
): Promise<IteratorResult<T> | typeof idle> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(() => resolve(idle)), intervalMs);
    const onAbort = () => finish(() => reject(abortError(signal)));
    signal.addEventListener('abort', onAbort, { once: true });
    function finish(settle: () => void) {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      settle();
    }
    pending.then(
      (r) => finish(() => resolve(r)),
      (err: unknown) => finish(() => reject(err instanceof Error ? err : new Error(String(err)))),
    );
  });
}
