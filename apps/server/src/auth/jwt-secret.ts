import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '@wrenn/core';

/** The shortest HS256 key accepted (also for WRENN_JWT_SECRET): 32 characters. */
export const MIN_JWT_SECRET_LENGTH = 32;

/**
 * The session key kept in `<dataDir>/server/jwt-secret` (0600), made on first start so sessions
 * survive restarts without setup. A file holding a key shorter than `MIN_JWT_SECRET_LENGTH` (or an
 * empty one) is replaced with a new key, so every session signed with the weak one ends. Throws
 * when the file cannot be written or still holds no usable key after that.
 */
export async function persistentJwtSecret(dataDir: string, logger?: Logger): Promise<string> {
  const file = path.join(dataDir, 'server', 'jwt-secret');
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const existing = await readSecret(file);
  if (existing !== undefined && existing.length >= MIN_JWT_SECRET_LENGTH) return existing;
  const secret = randomBytes(48).toString('base64url');
  if (existing === undefined) {
    // 'wx': when two servers start at once, the first secret written wins and both read it.
    await writeFile(file, secret, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  } else {
    logger?.warn(
      { file, length: existing.length },
      `the session key is shorter than ${MIN_JWT_SECRET_LENGTH} characters; replacing it (sessions signed with it end)`,
    );
    // Written beside and renamed over, so no reader ever sees half a key.
    const partial = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(partial, secret, { mode: 0o600, flag: 'wx' });
      await rename(partial, file);
    } finally {
      await rm(partial, { force: true });
    }
  }
  const stored = await readSecret(file);
  if (stored === undefined || stored.length < MIN_JWT_SECRET_LENGTH)
    throw new Error(`${file}: holds no session key of at least ${MIN_JWT_SECRET_LENGTH} characters`);
  return stored;
}

async function readSecret(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
