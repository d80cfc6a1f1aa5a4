import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition, type ConnectError } from '@wrenn/core';

// What a checkpoint held when it was written: each file's size and SHA-256, kept beside the
// checkpoint (never inside it: a snapshot hard-links every file of the checkpoint dir, and a
// manifest written while it does so would be linked half-made). runsc cannot always tell a damaged
// image from other failures (a truncated or altered state file ends its restore in a Go panic), and
// with `--background` a damaged memory file would fail only after the restore "succeeded"; the
// manifest lets the agent say "damaged" plainly, and refuse a truncated image before runsc starts.

interface Manifest {
  files: Record<string, { size: number; sha256: string }>;
}

export const manifestPath = (checkpointDir: string) => `${checkpointDir}.manifest.json`;

/** Removes the manifest: done before a new checkpoint takes the place, so it never describes another. */
export async function forgetManifest(checkpointDir: string): Promise<void> {
  await rm(manifestPath(checkpointDir), { force: true });
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Records the checkpoint's files as they are now (written atomically). */
export async function writeManifest(checkpointDir: string): Promise<void> {
  const files: Manifest['files'] = {};
  for (const name of (await readdir(checkpointDir)).sort()) {
    const file = path.join(checkpointDir, name);
    files[name] = { size: (await stat(file)).size, sha256: await sha256(file) };
  }
  const tmp = `${manifestPath(checkpointDir)}.tmp`;
  await writeFile(tmp, JSON.stringify({ files } satisfies Manifest), { mode: 0o600 });
  await rename(tmp, manifestPath(checkpointDir));
}

async function readManifest(checkpointDir: string): Promise<Manifest | undefined> {
  const text = await readFile(manifestPath(checkpointDir), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Manifest;
  } catch {
    return undefined;
  }
}

/**
 * How the checkpoint differs from its manifest ("checkpoint.img: 1048576 bytes, 2097152 when
 * written"), or undefined when it matches or has no manifest (a checkpoint an older agent made).
 * `contents` hashes every file as well; without it only names and sizes are compared (a few stats).
 */
export async function checkpointDamage(
  checkpointDir: string,
  opts: { contents: boolean },
): Promise<string | undefined> {
  const manifest = await readManifest(checkpointDir);
  if (!manifest) return undefined;
  const present = new Set(await readdir(checkpointDir).catch(() => [] as string[]));
  for (const [name, expected] of Object.entries(manifest.files)) {
    if (!present.has(name)) return `${name} is missing`;
    const file = path.join(checkpointDir, name);
    const size = (await stat(file)).size;
    if (size !== expected.size) return `${name}: ${size} bytes, ${expected.size} when written`;
    if (opts.contents && (await sha256(file)) !== expected.sha256)
      return `${name}: its contents changed since it was written`;
  }
  return undefined;
}

/** The error a resume of a sandbox with a damaged checkpoint answers. */
export function damagedCheckpoint(id: string, damage: string): ConnectError {
  return failedPrecondition(
    `resume sandbox ${id}: its checkpoint is damaged (${damage}); the sandbox stays paused and cannot be resumed from it`,
  );
}
