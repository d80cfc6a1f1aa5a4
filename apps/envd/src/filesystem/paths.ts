import { chown, mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Code, ConnectError } from '@wrenn/core';
import { expandHome } from '../process/launch.js';
import type { LinuxUser } from '../users/user-directory.js';

/** A client path made absolute: `~` expands, relative paths are relative to the user's home. */
export function resolveUserPath(path: string, user: LinuxUser): string {
  // Node's fs refuses a NUL byte with a TypeError, which would surface as an internal error.
  if (path.includes('\0')) throw new ConnectError('path must not contain NUL bytes', Code.InvalidArgument);
  return resolve(user.home, expandHome(path, user.home));
}

/**
 * mkdir -p that gives every directory it creates to the user (E2B's EnsureDirs), so files the user
 * uploads into new folders stay writable for them.
 * @throws ConnectError(InvalidArgument) when a path component exists and is not a directory.
 */
export async function ensureDir(path: string, owner: { uid: number; gid: number }): Promise<void> {
  const missing: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      if (!(await stat(dir)).isDirectory()) {
        throw new ConnectError(`path '${dir}' exists but is not a directory`, Code.InvalidArgument);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.push(dir);
      if (dirname(dir) === dir) break;
    }
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      continue;
    }
    await chown(dir, owner.uid, owner.gid);
  }
}
