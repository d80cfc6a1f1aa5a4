import { Code, codeName, ConnectError, httpStatusFromCode } from '@wrenn/core';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';

/** An error the API answers as `{ code, message }` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    /** Headers the answer carries (e.g. `Retry-After`). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * A schema failure as a 400 naming the first offending field (`whole` when it is the input itself),
 * with the names of unknown fields.
 */
export function invalidInput(err: ZodError, whole = 'body'): ApiError {
  const issue = err.issues[0];
  const field = issue?.path.length ? issue.path.join('.') : whole;
  const unknownKeys = issue?.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : '';
  return new ApiError(400, 'invalid_argument', `${field}: ${issue?.message ?? 'invalid'}${unknownKeys}`);
}

export const badRequest = (field: string, problem: string) =>
  new ApiError(400, 'invalid_argument', `${field}: ${problem}`);
/** A request body that may be empty: undefined then, else its JSON (400 when it is not JSON). */
export async function optionalJsonBody(req: Request): Promise<unknown> {
  const text = await req.text();
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw badRequest('body', 'malformed JSON');
  }
}

export const unauthorized = (message: string) => new ApiError(401, 'unauthenticated', message);
export const forbidden = (message: string) => new ApiError(403, 'permission_denied', message);
export const notFound = (what: string, id: string) =>
  new ApiError(404, 'not_found', `${what} ${JSON.stringify(id)} not found`);
export const conflict = (message: string) => new ApiError(409, 'already_exists', message);
export const rateLimited = (message: string, retryAfterSec?: number) =>
  new ApiError(
    429,
    'rate_limited',
    message,
    retryAfterSec === undefined ? {} : { 'Retry-After': String(retryAfterSec) },
  );

// The agent speaks Connect codes; the API answers the HTTP status each one means (one table, in
// @wrenn/core). Only these carry a message meant for the client; the others (internal, unknown,
// data_loss…) are a 500 without detail.
const TOLD_TO_CLIENT = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.FailedPrecondition,
  Code.Aborted,
  Code.ResourceExhausted,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.DeadlineExceeded,
  Code.Unavailable,
  Code.Unimplemented,
]);

/** What the client is told about a failure; internal errors say nothing of their cause. */
export function toApiError(err: unknown): ApiError | undefined {
  if (err instanceof ApiError) return err;
  if (err instanceof HTTPException) {
    // Hono's own (malformed JSON, a body over a limit…): their status is the answer.
    if (err.status === 400)
      return new ApiError(
        400,
        'invalid_argument',
        /json/i.test(err.message) ? 'body: malformed JSON' : err.message,
      );
    return new ApiError(err.status, 'error', err.message);
  }
  // PostgreSQL (and PGlite) refuse text holding a NUL byte, which JSON, paths and query strings can
  // all carry (`%00`): the input was bad, whichever field it came in.
  if (isNulInText(err))
    return new ApiError(400, 'invalid_argument', 'a value holds a NUL byte, which text cannot');
  // The server never cancels a call whose answer it still awaits, so a cancelled call is the agent
  // (or its connection) going away mid-call, as a restart does: worth a retry, not a 500.
  if (err instanceof ConnectError && err.code === Code.Canceled)
    return new ApiError(
      503,
      'unavailable',
      `the host's agent stopped answering during the call (it may be restarting); try again (${err.rawMessage})`,
    );
  if (err instanceof ConnectError && TOLD_TO_CLIENT.has(err.code))
    return new ApiError(
      httpStatusFromCode(err.code) as ContentfulStatusCode,
      codeName(err.code),
      err.rawMessage,
    );
  return undefined;
}

/** SQLSTATE 22021 (character_not_in_repertoire): what the database says of a NUL in text. */
function isNulInText(err: unknown): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === '22021' && /0x00/.test(err.message);
}
