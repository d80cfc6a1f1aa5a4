import { open } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import busboy from 'busboy';
import { Code, ConnectError, type Logger } from '@wrenn/core';
import { ensureDir, resolveUserPath } from '../filesystem/paths.js';
import type { RequestUsers } from '../users/request-user.js';
import type { LinuxUser } from '../users/user-directory.js';
import { sendEnvdError, sendJson } from './responses.js';

interface WrittenFile {
  path: string;
  name: string;
  type: 'file';
}

/** An upload failure with the HTTP status E2B's envd gives it. */
class UploadError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * POST /files: multipart/form-data (every part named `file`; the target is the `path` query or the
 * part's filename, which may be a full path) or a raw application/octet-stream body with `path`;
 * either may be gzip-encoded. Data streams straight to disk with backpressure, parents are created,
 * existing files are overwritten, and everything is owned by the user.
 */
export async function handleUpload(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  users: RequestUsers,
  logger: Logger,
): Promise<void> {
  try {
    let user: LinuxUser;
    try {
      user = await users.resolve(query.get('username') || undefined);
    } catch (err) {
      if (err instanceof ConnectError) throw new UploadError(401, err.rawMessage);
      throw err;
    }
    const body = decodedBody(req);
    const contentType = req.headers['content-type'] ?? '';
    const queryPath = query.get('path') || undefined;
    const written = /^multipart\/form-data/i.test(contentType)
      ? await receiveMultipart(req, body, queryPath, user)
      : await receiveRaw(body, contentType, queryPath, user);
    sendJson(res, 200, written);
  } catch (err) {
    // Whatever of the body is still coming is discarded; the connection is not reused.
    res.setHeader('connection', 'close');
    req.resume();
    if (err instanceof UploadError) return sendEnvdError(res, err.status, err.message);
    // A path refused before any write (resolveUserPath: a NUL byte).
    if (err instanceof ConnectError && err.code === Code.InvalidArgument)
      return sendEnvdError(res, 400, err.rawMessage);
    logger.warn({ err }, 'upload failed');
    sendEnvdError(res, 500, 'error writing file');
  }
}

function decodedBody(req: IncomingMessage): Readable {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
  if (encoding === 'identity' || encoding === '') return req;
  if (encoding === 'gzip') {
    const gunzip = createGunzip();
    // Whoever reads the body gets its errors too; a request refused before its body is read (a bad
    // content type, no path) would otherwise leave a gunzip 'error' without a listener: fatal.
    gunzip.on('error', () => undefined);
    return req.pipe(gunzip);
  }
  throw new UploadError(400, `unsupported content encoding '${encoding}'`);
}

async function receiveRaw(
  body: Readable,
  contentType: string,
  queryPath: string | undefined,
  user: LinuxUser,
): Promise<WrittenFile[]> {
  if (contentType !== '' && !/^application\/octet-stream/i.test(contentType)) {
    throw new UploadError(400, `unsupported content type '${contentType}'`);
  }
  if (!queryPath) throw new UploadError(400, 'path is required for an application/octet-stream upload');
  return [await writeFile(resolveUserPath(queryPath, user), body, user)];
}

function receiveMultipart(
  req: IncomingMessage,
  body: Readable,
  queryPath: string | undefined,
  user: LinuxUser,
): Promise<WrittenFile[]> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      // preservePath: the SDK sends the full target path as the part's filename.
      parser = busboy({ headers: req.headers, preservePath: true });
    } catch (err) {
      reject(new UploadError(400, `invalid multipart request: ${(err as Error).message}`));
      return;
    }
    const writes: Array<Promise<WrittenFile>> = [];
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      body.unpipe(parser);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    parser.on('file', (field, stream, info) => {
      if (field !== 'file' || failed) {
        stream.resume();
        return;
      }
      const target = queryPath ?? info.filename;
      if (!target) {
        stream.resume();
        fail(new UploadError(400, 'a file part has no filename and there is no path query'));
        return;
      }
      // One file at a time, in part order: parts aimed at the same path end with the last one, and
      // a waiting part's stream stays paused, which pauses the request too.
      const previous = writes.at(-1) ?? Promise.resolve(undefined);
      const write = previous.then(() => writeFile(resolveUserPath(target, user), stream, user));
      write.catch((err: unknown) => {
        stream.resume();
        fail(err);
      });
      writes.push(write);
    });
    parser.on('error', (err: Error) => fail(new UploadError(400, `invalid multipart body: ${err.message}`)));
    parser.on('close', () => {
      Promise.all(writes).then((files) => {
        if (failed) return;
        if (files.length === 0) fail(new UploadError(400, 'no part named "file" in the multipart body'));
        else resolve(files);
      }, fail);
    });
    body.on('error', (err) => fail(new UploadError(400, `error reading body: ${err.message}`)));
    body.pipe(parser);
  });
}

async function writeFile(path: string, data: Readable, user: LinuxUser): Promise<WrittenFile> {
  try {
    await ensureDir(dirname(path), user);
    const file = await open(path, 'w', 0o644);
    try {
      await file.chown(user.uid, user.gid);
    } catch (err) {
      await file.close();
      throw err;
    }
    // The write stream owns the handle from here and closes it, also on error.
    await pipeline(data, file.createWriteStream());
  } catch (err) {
    throw uploadError(err, path);
  }
  return { path, name: basename(path), type: 'file' };
}

function uploadError(err: unknown, path: string): Error {
  if (err instanceof UploadError) return err;
  if (err instanceof ConnectError && err.code === Code.InvalidArgument)
    return new UploadError(400, err.rawMessage);
  const code: string = (err as NodeJS.ErrnoException).code ?? '';
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new UploadError(507, `not enough disk space to write '${path}'`);
    case 'EISDIR':
      return new UploadError(400, `path '${path}' is a directory`);
    case 'ENOTDIR':
      return new UploadError(400, `a parent of '${path}' is not a directory`);
    case 'ENAMETOOLONG':
    case 'ELOOP':
    case 'EINVAL':
      return new UploadError(400, `path '${path}' cannot be written (${code})`);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new UploadError(403, `permission denied: '${path}'`);
    case 'Z_DATA_ERROR':
    case 'Z_BUF_ERROR':
      return new UploadError(400, 'invalid gzip body');
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}
