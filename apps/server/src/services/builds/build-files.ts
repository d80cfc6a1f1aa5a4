import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError, badRequest } from '../../http/errors.js';

const HASH = /^[0-9a-f]{64}$/;

/** Whose files: a team's (`team:<uuid>`) or the platform's (admins' builds). */
export type BuildScope = string;

export const teamScope = (teamId: string | null): BuildScope => (teamId ? `team:${teamId}` : 'platform');

/**
 * The files COPY steps take from: one tar archive (gzip or not) per hash and scope, uploaded before
 * the build and streamed to disk (never held in memory), then streamed into the build's sandbox.
 * A team's files are only seen by its own builds.
 */
export class BuildFiles {
  constructor(readonly dir: string) {}

  path(scope: BuildScope, hash: string): string {
    if (!HASH.test(hash)) throw badRequest('hash', 'must be a SHA-256 in hex');
    return path.join(this.dir, scope.replace(':', '-'), `${hash}.tar`);
  }

  async has(scope: BuildScope, hash: string): Promise<boolean> {
    return stat(this.path(scope, hash)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  /**
   * Stores an upload under its hash, replacing any earlier one only once it is whole. `verify`:
   * the hash must be the SHA-256 of the bytes (a `/v1` context); E2B's hash is of the files inside,
   * computed by its SDK, and is taken as the team's word.
   */
  async put(
    scope: BuildScope,
    hash: string,
    body: Readable,
    opts: { maxBytes: number; verify: boolean },
  ): Promise<{ size: number }> {
    const target = this.path(scope, hash);
    await mkdir(path.dirname(target), { recursive: true });
    const partial = `${target}.${randomBytes(6).toString('hex')}.partial`;
    const digest = createHash('sha256');
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > opts.maxBytes) {
          done(new ApiError(413, 'payload_too_large', `body: larger than ${opts.maxBytes} bytes`));
          return;
        }
        digest.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, count, createWriteStream(partial, { mode: 0o600 }));
      if (opts.verify && digest.digest('hex') !== hash)
        throw badRequest('hash', 'is not the SHA-256 of the uploaded bytes');
      await rename(partial, target);
      return { size };
    } finally {
      await rm(partial, { force: true });
    }
  }

  /** Whether the stored archive is gzip (the sandbox's `tar` may not guess on its own). */
  async isGzip(scope: BuildScope, hash: string): Promise<boolean> {
    const file = await open(this.path(scope, hash), 'r');
    try {
      const head = Buffer.alloc(2);
      await file.read(head, 0, 2, 0);
      return head[0] === 0x1f && head[1] === 0x8b;
    } finally {
      await file.close();
    }
  }
}
