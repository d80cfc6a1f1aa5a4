import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEnvd, type EnvdFixture } from '../testing/envd-fixture.js';

let envd: EnvdFixture;

beforeAll(async () => {
  envd = await startEnvd();
});

afterAll(async () => {
  await envd.close();
});

function filesUrl(params: Record<string, string>): string {
  return `${envd.baseUrl}/files?${new URLSearchParams(params).toString()}`;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('POST /files', () => {
  it('writes a multipart upload to the path query, creating parents', async () => {
    const path = join(envd.dir, 'up', 'nested', 'a.txt');
    const form = new FormData();
    form.append('file', new Blob(['hello']), path);
    const res = await fetch(filesUrl({ path }), { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([{ path, name: 'a.txt', type: 'file' }]);
    expect(await readFile(path, 'utf8')).toBe('hello');
  });

  it('writes several parts to their filenames when there is no path query, overwriting', async () => {
    const one = join(envd.dir, 'multi', 'one.txt');
    const two = join(envd.dir, 'multi', 'sub', 'two.txt');
    await mkdir(join(envd.dir, 'multi'), { recursive: true });
    await writeFile(one, 'old content that is longer');
    const form = new FormData();
    form.append('file', new Blob(['1']), one);
    form.append('file', new Blob(['22']), two);
    const res = await fetch(`${envd.baseUrl}/files`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([
      { path: one, name: 'one.txt', type: 'file' },
      { path: two, name: 'two.txt', type: 'file' },
    ]);
    expect(await readFile(one, 'utf8')).toBe('1');
    expect(await readFile(two, 'utf8')).toBe('22');
  });

  it('writes parts aimed at one path in order, so the last one wins', async () => {
    const path = join(envd.dir, 'same.txt');
    const form = new FormData();
    form.append('file', new Blob([randomBytes(2 * 1024 * 1024)]), 'a');
    form.append('file', new Blob(['second']), 'b');
    const res = await fetch(filesUrl({ path }), { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(await readFile(path, 'utf8')).toBe('second');
  });

  it('accepts a raw octet-stream body, also gzip-encoded', async () => {
    const path = join(envd.dir, 'raw.bin');
    const data = randomBytes(100_000);
    let res = await fetch(filesUrl({ path }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
    });
    expect(res.status).toBe(200);
    expect(sha256(await readFile(path))).toBe(sha256(data));

    const gz = join(envd.dir, 'gz.txt');
    res = await fetch(filesUrl({ path: gz }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' },
      body: gzipSync(Buffer.from('compressed text')),
    });
    expect(res.status).toBe(200);
    expect(await readFile(gz, 'utf8')).toBe('compressed text');
  });

  it('gives uploaded files and new folders to the user named in the query', async () => {
    const path = join(envd.dir, 'nobody-dir', 'n.txt');
    const form = new FormData();
    form.append('file', new Blob(['n']), 'ignored-name');
    const res = await fetch(filesUrl({ path, username: 'nobody' }), { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const nobodyUid = (await stat(path)).uid;
    expect(nobodyUid).not.toBe(0);
    expect((await stat(join(envd.dir, 'nobody-dir'))).uid).toBe(nobodyUid);
  });

  it('answers 400 for a raw body without path, 401 for an unknown user, 507 when the disk is full', async () => {
    let res = await fetch(`${envd.baseUrl}/files`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: 'x',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 400 });

    res = await fetch(filesUrl({ path: join(envd.dir, 'x'), username: 'ghost-user-xyz' }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: 'x',
    });
    expect(res.status).toBe(401);

    // /dev/full fails every write with ENOSPC.
    res = await fetch(filesUrl({ path: '/dev/full' }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: randomBytes(10_000),
    });
    expect(res.status).toBe(507);
    expect(await res.json()).toMatchObject({ code: 507 });
  });
});

describe('GET /files', () => {
  it('round-trips a 20 MB random file byte for byte, streamed with Content-Length', async () => {
    const data = randomBytes(20 * 1024 * 1024 + 123);
    const path = join(envd.dir, 'big', 'random.bin');
    const form = new FormData();
    form.append('file', new Blob([data]), path);
    const up = await fetch(filesUrl({ path }), { method: 'POST', body: form });
    expect(up.status).toBe(200);

    const res = await fetch(filesUrl({ path }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(data.length));
    expect(res.headers.get('content-disposition')).toContain('inline; filename="random.bin"');
    const body = new Uint8Array(await res.arrayBuffer());
    expect(body.length).toBe(data.length);
    expect(sha256(body)).toBe(sha256(data));
  });

  it('resolves a relative path against the home directory', async () => {
    const name = `envd-download-${Date.now()}.txt`;
    await writeFile(join(homedir(), name), 'from home');
    try {
      const res = await fetch(filesUrl({ path: name }));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('from home');
    } finally {
      await rm(join(homedir(), name), { force: true });
    }
  });

  it('serves an empty file with Content-Length 0', async () => {
    const path = join(envd.dir, 'empty.txt');
    await writeFile(path, '');
    const res = await fetch(filesUrl({ path }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe('0');
    expect(await res.text()).toBe('');
  });

  it('answers 404 for a missing file, 400 for a directory or no path, as JSON', async () => {
    let res = await fetch(filesUrl({ path: join(envd.dir, 'does-not-exist') }));
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toMatchObject({ code: 404 });
    res = await fetch(filesUrl({ path: envd.dir }));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 400 });
    res = await fetch(`${envd.baseUrl}/files`);
    expect(res.status).toBe(400);
  });

  // Found by fuzz.int.test.ts: these were 500s.
  it('answers 400 for a path with a NUL byte, reading and writing', async () => {
    const path = join(envd.dir, 'a\0b');
    let res = await fetch(filesUrl({ path }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ code: 400, message: 'path must not contain NUL bytes' });
    res = await fetch(filesUrl({ path }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: 'hi',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ code: 400, message: 'path must not contain NUL bytes' });
  });

  it('refuses a gzip body it never reads without dying of the gunzip error', async () => {
    for (const type of ['text/plain', 'multipart/form-data']) {
      const res = await fetch(filesUrl({ path: join(envd.dir, 'never.txt') }), {
        method: 'POST',
        headers: { 'content-type': type, 'content-encoding': 'gzip' },
        body: 'not gzip at all',
      });
      expect(res.status).toBe(400);
    }
    await new Promise((r) => setTimeout(r, 100)); // the gunzip error comes after the answer
    expect((await fetch(`${envd.baseUrl}/health`)).status).toBe(204);
  });

  it('answers 400 for a path the kernel refuses (too long), reading and writing', async () => {
    const path = join(envd.dir, 'x'.repeat(300));
    let res = await fetch(filesUrl({ path }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toContain('ENAMETOOLONG');
    res = await fetch(filesUrl({ path }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: 'hi',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toContain('ENAMETOOLONG');
  });
});
