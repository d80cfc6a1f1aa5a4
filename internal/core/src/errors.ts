import { Code, ConnectError } from '@connectrpc/connect';

export { Code, ConnectError };

// One error vocabulary from agent to API: Connect codes. These helpers keep messages uniform and
// make every validation error name the offending field.

export function invalidArgument(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
}

export function notFound(what: string, id: string): ConnectError {
  return new ConnectError(`${what} ${JSON.stringify(id)} not found`, Code.NotFound);
}

export function failedPrecondition(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}

export function resourceExhausted(message: string): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted);
}

export function unavailable(message: string): ConnectError {
  return new ConnectError(message, Code.Unavailable);
}

/**
 * The HTTP status each Connect code means: one table for every HTTP face of Wrenn (the control
 * plane's `/v1` and E2B APIs, envd's HTTP errors). It is the Connect protocol's table but for one
 * code: `failed_precondition` is 409 Conflict ("the sandbox is pausing", "already paused": the
 * request conflicts with the resource's current state, RFC 9110 §15.5.10), where Connect says 400.
 * Connect clients read the code from the error body, so the status is only for HTTP clients.
 */
const HTTP_STATUS: Record<Code, number> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 409,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** HTTP status for a Connect code (see `HTTP_STATUS`). */
export function httpStatusFromCode(code: Code): number {
  return HTTP_STATUS[code];
}

/**
 * The Connect code an HTTP error status stands for, for errors read off HTTP answers (envd's). The
 * inverse of `HTTP_STATUS` where it is one-to-one; where several codes share a status, the one a
 * caller should act on: 409 is `already_exists` (what envd means by it), 413 and 507 (no room) are
 * `resource_exhausted`, and any other 5xx is `unavailable` (the peer is in trouble, try later).
 */
export function codeFromHttpStatus(status: number): Code {
  switch (status) {
    case 409:
      return Code.AlreadyExists;
    case 413:
    case 507:
    case 429:
      return Code.ResourceExhausted;
    case 400:
      return Code.InvalidArgument;
    default: {
      const exact = Object.entries(HTTP_STATUS).find(([, s]) => s === status);
      if (exact && status < 500) return Number(exact[0]);
      return status >= 500 ? Code.Unavailable : Code.Unknown;
    }
  }
}

/** A Connect code's name on the wire and in API errors: `failed_precondition`. */
export function codeName(code: Code): string {
  return Code[code].replace(/(?<=[a-z])(?=[A-Z])/g, '_').toLowerCase();
}

/** Connect code for a Node.js errno, for errors that come from the filesystem or a syscall. */
export function codeFromErrno(err: unknown): Code | undefined {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (errno ?? '') {
    case 'ENOENT':
      return Code.NotFound;
    case 'EEXIST':
    case 'ENOTEMPTY':
      return Code.AlreadyExists;
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return Code.PermissionDenied;
    case 'ENOSPC':
    case 'EDQUOT':
      return Code.ResourceExhausted;
    case 'ENOTDIR':
    case 'EISDIR':
    case 'EINVAL':
    case 'ENAMETOOLONG':
    case 'ELOOP':
      return Code.InvalidArgument;
    default:
      return undefined;
  }
}

export function assertExhaustive(value: never): never {
  throw new Error(`unhandled case: ${String(value)}`);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
