import { mkdir, mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointDamage, forgetManifest, manifestPath, writeManifest } from './checkpoint-manifest.js';

let dir: string;
let checkpoint: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'manifest-'));
  checkpoint = path.join(dir, 'checkpoint');
  await mkdir(checkpoint);
  await writeFile(path.join(checkpoint, 'checkpoint.img'), Buffer.alloc(4096, 7));
  await writeFile(path.join(checkpoint, 'pages.img'), Buffer.alloc(8192, 9));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('checkpoint manifest', () => {
  it('finds nothing wrong with an intact checkpoint, or one without a manifest', async () => {
    expect(await checkpointDamage(checkpoint, { contents: true })).toBeUndefined();
    await writeManifest(checkpoint);
    expect(await checkpointDamage(checkpoint, { contents: true })).toBeUndefined();
    expect(await checkpointDamage(checkpoint, { contents: false })).toBeUndefined();
  });

  it('names a truncated file by its sizes, even without reading contents', async () => {
    await writeManifest(checkpoint);
    await truncate(path.join(checkpoint, 'checkpoint.img'), 100);
    expect(await checkpointDamage(checkpoint, { contents: false })).toBe(
      'checkpoint.img: 100 bytes, 4096 when written',
    );
  });

  it('names a file whose bytes changed (same size) only when contents are compared', async () => {
    await writeManifest(checkpoint);
    const fd = await open(path.join(checkpoint, 'pages.img'), 'r+');
    await fd.write(Buffer.from([1, 2, 3]), 0, 3, 4000);
    await fd.close();
    expect(await checkpointDamage(checkpoint, { contents: false })).toBeUndefined();
    expect(await checkpointDamage(checkpoint, { contents: true })).toBe(
      'pages.img: its contents changed since it was written',
    );
  });

  it('names a missing file, and says nothing once the manifest is forgotten', async () => {
    await writeManifest(checkpoint);
    await rm(path.join(checkpoint, 'pages.img'));
    expect(await checkpointDamage(checkpoint, { contents: false })).toBe('pages.img is missing');
    await forgetManifest(checkpoint);
    expect(await checkpointDamage(checkpoint, { contents: true })).toBeUndefined();
  });

  it('keeps the manifest beside the checkpoint, not in it (a snapshot links every file inside)', () => {
    expect(path.dirname(manifestPath(checkpoint))).toBe(dir);
  });
});
