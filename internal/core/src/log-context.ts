import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Fields every log line written on behalf of one request carries, whichever logger writes it: the
 * request's id above all, so one grep finds a request's lines in the server's log and in its
 * agents'. Kept in AsyncLocalStorage rather than passed down, because the lines come from code
 * (lifecycle steps, runtime wrappers, undo stacks) that never sees the request.
 */
export interface LogContext {
  requestId?: string;
}

/** The header a request id travels in: the API's answers, and every call to an agent. */
export const REQUEST_ID_HEADER = 'x-request-id';

const storage = new AsyncLocalStorage<LogContext>();

/** Runs `fn` with `context` added to the log context (nested calls keep the outer fields). */
export function withLogContext<T>(context: LogContext, fn: () => T): T {
  return storage.run({ ...storage.getStore(), ...context }, fn);
}

/** The log context of the code running now (undefined outside any request). */
export function currentLogContext(): LogContext | undefined {
  return storage.getStore();
}

/**
 * A request id someone sent, when it is safe to log and pass on (letters, digits, `_.:-`, up to 128
 * characters); undefined otherwise.
 */
export function saneRequestId(value: string | null | undefined): string | undefined {
  return typeof value === 'string' && /^[\w.:-]{1,128}$/.test(value) ? value : undefined;
}
