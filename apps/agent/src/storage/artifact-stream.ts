import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { errorMessage } from '@wrenn/core';

/** What both ends compute over the bytes of an artifact's tar: the receiver checks the sender's. */
export interface ArtifactDigest {
  size: bigint;
  sha256: string;
}

/**
 * Streams `entries` of `dir` as a tar. GNU tar with `--sparse`: a sandbox's disk image is a mostly
 * empty file of several GiB, and only what it holds should cross the network. The generator's
 * return value is the digest of what it yielded; stopping early kills tar.
 */
export async function* packEntries(
  dir: string,
  entries: string[],
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array, ArtifactDigest> {
  const tar = spawn('tar', ['--sparse', '-C', dir, '-cf', '-', '--', ...entries], {
    stdio: ['ignore', 'pipe', 'pipe'],
    signal,
  });
  let stderr = '';
  tar.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(tar, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  exited.catch(() => undefined);
  const hash = createHash('sha256');
  let size = 0n;
  try {
    for await (const chunk of tar.stdout as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += BigInt(chunk.byteLength);
      yield chunk;
    }
    const [code] = await exited;
    if (code !== 0) throw new Error(`tar of ${dir} failed (exit ${code}): ${stderr.trim()}`);
  } finally {
    if (tar.exitCode === null) tar.kill('SIGKILL');
  }
  return { size, sha256: hash.digest('hex') };
}

/**
 * Unpacks a tar stream into `dir` (empty, the caller's staging dir) and returns the digest of the
 * bytes it took. The stream comes from another host, so tar runs without restoring owners, and
 * GNU tar's own guards apply: member names with `..` are refused and symlinks are made last, so no
 * member is written through one.
 */
export async function unpackInto(dir: string, chunks: AsyncIterable<Uint8Array>): Promise<ArtifactDigest> {
  const tar = spawn('tar', ['-C', dir, '-xf', '-', '--no-same-owner', '--no-overwrite-dir'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  tar.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(tar, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  // An EPIPE when tar quit early is reported by its exit status, with its own words.
  tar.stdin.on('error', () => undefined);
  const hash = createHash('sha256');
  let size = 0n;
  try {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += BigInt(chunk.byteLength);
      // Past tar's end-of-archive marker the rest is padding, still counted in the sender's digest.
      if (tar.exitCode !== null) continue;
      if (!tar.stdin.write(chunk)) await Promise.race([once(tar.stdin, 'drain'), exited]);
    }
    tar.stdin.end();
    const [code] = await exited;
    if (code !== 0) throw new Error(`unpacking into ${dir} failed (exit ${code}): ${stderr.trim()}`);
  } catch (err) {
    if (tar.exitCode === null) tar.kill('SIGKILL');
    throw err instanceof Error ? err : new Error(errorMessage(err));
  }
  return { size, sha256: hash.digest('hex') };
}
