import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIN_JWT_SECRET_LENGTH, persistentJwtSecret } from './jwt-secret.js';

let dataDir: string;
let file: string;

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'wrenn-jwt-'));
  file = path.join(dataDir, 'server', 'jwt-secret');
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('the persistent session key', () => {
  it('is made once (0600) and read back on the next start', async () => {
    const first = await persistentJwtSecret(dataDir);
    expect(first.length).toBeGreaterThanOrEqual(MIN_JWT_SECRET_LENGTH);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await persistentJwtSecret(dataDir)).toBe(first);
  });

  it('keeps a key of 32 characters or more that is already there', async () => {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `${'k'.repeat(32)}\n`);
    expect(await persistentJwtSecret(dataDir)).toBe('k'.repeat(32));
  });

  it('replaces a key shorter than 32 characters, and never uses it', async () => {
    for (const weak of ['short', 'x'.repeat(31), '', '   \n']) {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, weak, { mode: 0o644 });
      const secret = await persistentJwtSecret(dataDir);
      expect(secret.length, JSON.stringify(weak)).toBeGreaterThanOrEqual(MIN_JWT_SECRET_LENGTH);
      expect(secret).not.toContain(weak.trim() || '\0');
      // The file holds the new key (the next start uses it too), private, with nothing left beside it.
      expect((await readFile(file, 'utf8')).trim()).toBe(secret);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(await readdir(path.dirname(file))).toEqual(['jwt-secret']);
      expect(await persistentJwtSecret(dataDir)).toBe(secret);
    }
  });

  it('fails loudly when the key cannot be stored', async () => {
    // A directory where the file should be: neither readable as a key nor replaceable.
    await mkdir(file, { recursive: true });
    await expect(persistentJwtSecret(dataDir)).rejects.toThrow();
  });
});
