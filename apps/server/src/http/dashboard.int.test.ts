import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../db/database.js';
import { startTestServer, testLogger, type TestServer } from '../testing/api.js';

describe('the dashboard at /', () => {
  let dir: string;
  let built: TestServer;
  let unbuilt: TestServer;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'wrenn-dashboard-'));
    await mkdir(path.join(dir, 'assets'));
    await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>Wrenn</title><div id="root"></div>');
    await writeFile(path.join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
    await writeFile(path.join(dir, 'secret.txt'), 'not an asset');
    const db = () => openDatabase({ kind: 'pglite', dir: 'memory://' }, testLogger);
    built = await startTestServer(await db(), { dashboardDir: dir });
    unbuilt = await startTestServer(await db(), { dashboardDir: path.join(dir, 'missing') });
  });
  afterAll(async () => {
    await built?.stop();
    await unbuilt?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the page (never cached) and its hashed assets (cached for good)', async () => {
    const page = await built.send('GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('cache-control')).toBe('no-cache');
    expect(await page.text()).toContain('<div id="root">');
    const asset = await built.send('GET', '/assets/index-abc123.js');
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toBe('text/javascript');
    expect(asset.headers.get('cache-control')).toContain('immutable');
    expect(await asset.text()).toBe('console.log(1)');
  });

  it('answers 404 with the error body for anything but an asset, traversal included', async () => {
    for (const p of [
      '/assets/missing.js',
      '/assets/..%2fsecret.txt',
      '/assets/%2e%2e%2fsecret.txt',
      '/assets/x.exe',
    ]) {
      const res = await built.send('GET', p);
      expect(res.status, p).toBe(404);
      expect(((await res.json()) as { code: string }).code, p).toBe('not_found');
    }
    expect((await built.send('GET', '/assets/../secret.txt')).status).toBe(404);
  });

  it('says how to build it when it is not built', async () => {
    const page = await unbuilt.send('GET', '/');
    expect(page.status).toBe(404);
    const body = (await page.json()) as { code: string; message: string };
    expect(body.code).toBe('not_found');
    expect(body.message).toContain('npm run build');
  });
});
