import { Code, ConnectError, codeFromErrno, errorMessage } from '@wrenn/core';

/** A filesystem failure as the Connect error E2B clients expect (ENOENT → not_found, …). */
export function fsError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const code = codeFromErrno(err);
  if (code === Code.NotFound) return new ConnectError(`${what}: no such file or directory`, Code.NotFound);
  if (code !== undefined) return new ConnectError(`${what}: ${errorMessage(err)}`, code);
  return new ConnectError(`${what}: internal error`, Code.Internal, undefined, undefined, err);
}
