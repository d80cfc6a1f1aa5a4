import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CredentialsStore, type HostCredentials } from './credentials-store.js';

const creds: HostCredentials = {
  hostId: 'h1',
  controlPlaneUrl: 'http://cp:8080',
  keyPem: 'KEY',
  certPem: 'CERT',
  caPem: 'CA',
  accessToken: 'a1',
  refreshToken: 'r1',
};

describe('the credentials store', () => {
  let dataDir: string;
  let store: CredentialsStore;
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'wrenn-creds-'));
    store = CredentialsStore.in(dataDir);
  });
  afterEach(() => rm(dataDir, { recursive: true, force: true }));

  it('has nothing before registration', async () => {
    expect(await store.load()).toBeUndefined();
  });

  it('keeps every part in its own 0600 file in a 0700 directory, and reads them back', async () => {
    await store.save(creds);
    expect(await store.load()).toEqual(creds);
    const dir = path.join(dataDir, 'credentials');
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const files = (await readdir(dir)).sort();
    expect(files).toEqual(['ca.pem', 'cert.pem', 'host.json', 'key.pem', 'tokens.json']);
    for (const f of files) expect((await stat(path.join(dir, f))).mode & 0o777, f).toBe(0o600);
  });

  it('replaces tokens and the certificate on their own, leaving no temporary file', async () => {
    await store.save(creds);
    // A tmp file a crash left behind, readable by others: it is rewritten 0600, then renamed.
    await writeFile(path.join(dataDir, 'credentials', 'tokens.json.tmp'), 'junk', { mode: 0o644 });
    await store.saveTokens({ accessToken: 'a2', refreshToken: 'r2' });
    await store.saveCertificate('CERT2');
    expect(await store.load()).toEqual({ ...creds, accessToken: 'a2', refreshToken: 'r2', certPem: 'CERT2' });
    const dir = path.join(dataDir, 'credentials');
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect((await stat(path.join(dir, 'tokens.json'))).mode & 0o777).toBe(0o600);
  });

  it('sets credentials aside: none are loaded after, the old ones are kept beside', async () => {
    await store.save(creds);
    const aside = await store.setAside();
    expect(await store.load()).toBeUndefined();
    expect(path.dirname(aside)).toBe(dataDir);
    expect(path.basename(aside)).toMatch(/^credentials\.replaced-/);
    expect(await new CredentialsStore(aside).load()).toEqual(creds);
  });

  it('refuses incomplete credentials, saying what to do', async () => {
    await store.save(creds);
    await rm(path.join(dataDir, 'credentials', 'key.pem'));
    await expect(store.load()).rejects.toThrow(/incomplete.*register the host again/);
  });
});
