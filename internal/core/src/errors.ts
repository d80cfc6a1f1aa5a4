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

/** HTTP status for a Connect code (the table of the Connect protocol). */
export function httpStatusFromCode(code: Code): number {
  switch (code) {
    case Code.Canceled:
      return 499;
    case Code.Unknown:
      return 500;
    case Code.InvalidArgument:
      return 400;
    case Code.DeadlineExceeded:
      return 504;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
      return 409;
    case Code.PermissionDenied:
      return 403;
    case Code.ResourceExhausted:
      return 429;
    case Code.FailedPrecondition:
      return 400;
    case Code.Aborted:
      return 409;
    case Code.OutOfRange:
      return 400;
    case Code.Unimplemented:
      return 501;
    case Code.Internal:
      return 500;
    case Code.Unavailable:
      return 503;
    case Code.DataLoss:
      return 500;
    case Code.Unauthenticated:
      return 401;
    default:
      return assertExhaustive(code);
  }
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
