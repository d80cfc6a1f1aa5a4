import type { Interceptor } from '@connectrpc/connect';
import {
  Code,
  codeName,
  ConnectError,
  REQUEST_ID_HEADER,
  saneRequestId,
  withLogContext,
  type LogContext,
} from '@wrenn/core';
import type { AgentMetrics } from '../metrics/agent-metrics.js';

/**
 * The outermost interceptor of the agent's RPCs: runs each call (and its response stream, which is
 * read after the handler returned) in a log context holding the caller's `X-Request-Id`, so every
 * line the call makes carries it, and times the call for the metrics with its outcome.
 */
export function callContext(metrics: AgentMetrics | undefined): Interceptor {
  return (next) => async (req) => {
    const requestId = saneRequestId(req.header.get(REQUEST_ID_HEADER));
    const context: LogContext = requestId ? { requestId } : {};
    const started = performance.now();
    let observed = false;
    const observe = (err?: unknown) => {
      if (observed) return;
      observed = true;
      const code = err === undefined ? 'ok' : codeName(ConnectError.from(err).code);
      metrics?.observeRpc(req.method.name, code, (performance.now() - started) / 1000);
    };
    return withLogContext(context, async () => {
      try {
        const res = await next(req);
        if (!res.stream) {
          observe();
          return res;
        }
        return { ...res, message: inContext(context, res.message, observe) };
      } catch (err) {
        observe(err);
        throw err;
      }
    });
  };
}

/**
 * `source` read in `context`: each step of the stream (the handler's generator running on) happens
 * inside it. `ended` is told once: at the end, on an error, or when the reader stops early (a
 * cancelled stream counts as `canceled`).
 */
function inContext<T>(
  context: LogContext,
  source: AsyncIterable<T>,
  ended: (err?: unknown) => void,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = withLogContext(context, () => source[Symbol.asyncIterator]());
      const step = (call: () => Promise<IteratorResult<T>>) =>
        withLogContext(context, call).then(
          (result) => {
            if (result.done) ended();
            return result;
          },
          (err: unknown) => {
            ended(err);
            throw err;
          },
        );
      return {
        next: () => step(() => it.next()),
        return: (value?: unknown) => {
          ended(new ConnectError('the reader stopped', Code.Canceled));
          return step(() => it.return?.(value) ?? Promise.resolve({ done: true, value: undefined }));
        },
        throw: (err?: unknown) => step(() => it.throw?.(err) ?? Promise.reject(ConnectError.from(err))),
      };
    },
  };
}
