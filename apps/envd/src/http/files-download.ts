import { open } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ConnectError, type Logger } from '@wrenn/core';
import { resolveUserPath } from '../filesystem/paths.js';
import type { RequestUsers } from '../users/request-user.js';
import { sendEnvdError } from './responses.js';

/**
 * GET /files?path=&username=: streams the file (never buffered whole) with its Content-Length.
 * Range and gzip transfer are not offered; identity is always an acceptable answer.
 */
export async function handleDownload(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  users: RequestUsers,
  logger: Logger,
): Promise<void> {
  let user;
  try {
    user = await users.resolve(query.get('username') || undefined);
  } catch (err) {
    if (err instanceof ConnectError) return sendEnvdError(res, 401, err.rawMessage);
    throw err;
  }
  const rawPath = query.get('path');
  if (!rawPath) return sendEnvdError(res, 400, 'path is required');
  let path: string;
  try {
    path = resolveUserPath(rawPath, user);
  } catch (err) {
    if (err instanceof ConnectError) return sendEnvdError(res, 400, err.rawMessage);
    throw err;
  }

  let file;
  try {
    file = await open(path, 'r');
  } catch (err) {
    return sendFsError(res, err, path);
  }
  try {
    const st = await file.stat();
    if (st.isDirectory()) return sendEnvdError(res, 400, `path '${path}' is a directory`);
    if (!st.isFile()) return sendEnvdError(res, 400, `path '${path}' is not a regular file`);
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': st.size,
      'content-disposition': contentDisposition(basename(path)),
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD' || st.size === 0) {
      res.end();
      return;
    }
    // Bounded by the size announced in Content-Length even if the file grows meanwhile. The stream
    // takes over the handle and closes it.
    const stream = file.createReadStream({ start: 0, end: st.size - 1 });
    file = undefined;
    await pipeline(stream, res);
  } catch (err) {
    logger.warn({ err, path }, 'download failed');
    if (!res.headersSent) sendFsError(res, err, path);
    else res.destroy();
  } finally {
    await file?.close();
  }
}

function sendFsError(res: ServerResponse, err: unknown, path: string): void {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return sendEnvdError(res, 404, `path '${path}' does not exist`);
  if (code === 'EACCES' || code === 'EPERM') return sendEnvdError(res, 403, `permission denied: '${path}'`);
  if (code === 'EISDIR') return sendEnvdError(res, 400, `path '${path}' is a directory`);
  if (code === 'ENAMETOOLONG' || code === 'ELOOP' || code === 'EINVAL')
    return sendEnvdError(res, 400, `path '${path}' cannot be opened (${code})`);
  sendEnvdError(res, 500, `error reading '${path}'`);
}

/** `inline` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987). */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `inline; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
