import http from 'node:http';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileSignature } from './auth/signature.js';
import { startEnvd, type EnvdFixture } from './testing/envd-fixture.js';
import { collect, isAlive } from './testing/process-events.js';
import { ENVD_VERSION } from './version.js';

let envd: EnvdFixture;

beforeEach(async () => {
  envd = await startEnvd();
});

afterEach(async () => {
  await envd.close();
});

function init(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${envd.baseUrl}/init`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

function sh(script: string) {
  return { process: { cmd: '/bin/bash', args: ['-c', script] }, stdin: false };
}

describe('health and routing', () => {
  it('answers /health with 204 and no body', async () => {
    const res = await fetch(`${envd.baseUrl}/health`);
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
  });

  it('answers unknown paths with proper errors', async () => {
    let res = await fetch(`${envd.baseUrl}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 404 });
    res = await fetch(`${envd.baseUrl}/process.Process/Explode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'unimplemented' });
    res = await fetch(`${envd.baseUrl}/health`, { method: 'POST' });
    expect(res.status).toBe(405);
  });

  it('speaks unary Connect JSON with error bodies the SDK understands', async () => {
    const res = await fetch(`${envd.baseUrl}/filesystem.Filesystem/Stat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ path: '/definitely/not/here' }),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'not_found' });
  });

  // Found by fuzz.int.test.ts: connect-es answers these with `internal` (500) or `unimplemented`.
  it('answers an undecodable RPC request with invalid_argument, unary and streaming', async () => {
    const post = (rpc: string, type: string, body: Uint8Array, headers: Record<string, string> = {}) =>
      fetch(`${envd.baseUrl}/${rpc}`, {
        method: 'POST',
        headers: { 'content-type': type, ...headers },
        body,
      });
    const frame = (flags: number, payload: Uint8Array) => {
      const head = Buffer.alloc(5);
      head[0] = flags;
      head.writeUInt32BE(payload.length, 1);
      return Buffer.concat([head, payload]);
    };
    const unary = [
      await post('filesystem.Filesystem/Stat', 'application/proto', Buffer.from('{')), // not protobuf
      await post('process.Process/List', 'application/proto', Buffer.from([0xf5]), {
        'content-encoding': 'gzip',
      }),
    ];
    for (const res of unary) {
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'invalid_argument' });
    }
    const streams = [
      await post('process.Process/Start', 'application/connect+proto', frame(0, Buffer.from('{'))),
      await post('process.Process/Start', 'application/connect+json', Buffer.alloc(0)), // no message
      await post('filesystem.Filesystem/WatchDir', 'application/connect+json', frame(1, Buffer.from('{}'))),
    ];
    for (const res of streams) {
      expect(res.status).toBe(200);
      const body = Buffer.from(await res.arrayBuffer());
      expect(body[0]).toBe(2); // the end of the stream
      expect(JSON.parse(body.subarray(5).toString())).toMatchObject({ error: { code: 'invalid_argument' } });
    }
  });

  it('takes a path of two slashes as a path (404), not as a URL without a host (500)', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: envd.port, path: '//' }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toMatchObject({ code: 404 });
  });
});

describe('/metrics', () => {
  it('reports CPU, memory and disk in E2B’s shape', async () => {
    const res = await fetch(`${envd.baseUrl}/metrics`);
    expect(res.status).toBe(200);
    const m = (await res.json()) as Record<string, number>;
    expect(m.cpu_count).toBeGreaterThan(0);
    expect(m.cpu_used_pct).toBeGreaterThanOrEqual(0);
    expect(m.cpu_used_pct).toBeLessThanOrEqual(100);
    expect(m.mem_total).toBeGreaterThan(m.mem_used as number);
    expect(m.mem_total_mib).toBe(Math.floor((m.mem_total as number) / 1024 / 1024));
    expect(m.disk_total).toBeGreaterThan(m.disk_used as number);
    expect(Math.abs((m.ts as number) - Date.now() / 1000)).toBeLessThan(60);
  });
});

describe('/init', () => {
  it('sets env vars, default user and workdir, and reports the version', async () => {
    const res = await init({ envVars: { FROM_INIT: 'yes' }, defaultUser: 'nobody', defaultWorkdir: '/tmp' });
    expect(res.status).toBe(204);
    expect(res.headers.get('x-envd-version')).toBe(ENVD_VERSION);
    const envs = await fetch(`${envd.baseUrl}/envs`);
    expect(await envs.json()).toEqual({ FROM_INIT: 'yes' });
    const run = await collect(envd.process.start(sh('echo $FROM_INIT; id -un; pwd')));
    expect(run.stdout).toBe('yes\nnobody\n/tmp\n');
  });

  it('protects an access token once set', async () => {
    expect((await init({ accessToken: 'first' })).status).toBe(204);
    expect((await init({ envVars: { A: 'b' } })).status).toBe(401);
    expect((await init({ accessToken: 'second' })).status).toBe(409);
    expect((await init({ accessToken: 'first', envVars: { A: 'b' } })).status).toBe(204);
    expect((await init({ accessToken: 'second' }, { 'X-Access-Token': 'first' })).status).toBe(204);
    const envs = await fetch(`${envd.baseUrl}/envs`, { headers: { 'X-Access-Token': 'second' } });
    expect(envs.status).toBe(200);
  });
});

describe('access token', () => {
  it('guards RPCs and REST routes but not /health', async () => {
    expect((await init({ accessToken: 'secret-token' })).status).toBe(204);

    expect((await fetch(`${envd.baseUrl}/health`)).status).toBe(204);
    const envs = await fetch(`${envd.baseUrl}/envs`);
    expect(envs.status).toBe(401);
    expect(await envs.json()).toMatchObject({ code: 401 });

    const err = await envd.process.list({}).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    const streamErr = await collect(envd.process.start(sh('true'))).catch((e: unknown) =>
      ConnectError.from(e),
    );
    expect((streamErr as ConnectError).code).toBe(Code.Unauthenticated);

    const authed = envd.clients({ 'X-Access-Token': 'secret-token' });
    expect((await authed.process.list({})).processes).toBeInstanceOf(Array);
    expect((await collect(authed.process.start(sh('echo ok')))).stdout).toBe('ok\n');
    const wrong = envd.clients({ 'X-Access-Token': 'secret-tokeX' });
    const wrongErr = await wrong.process.list({}).catch((e: unknown) => ConnectError.from(e));
    expect((wrongErr as ConnectError).code).toBe(Code.Unauthenticated);
  });

  it('lets /files through with the token or a valid signature only', async () => {
    const token = 'files-token';
    expect((await init({ accessToken: token })).status).toBe(204);
    const path = join(envd.dir, 'signed.txt');
    await writeFile(path, 'signed content');

    const url = (params: Record<string, string>) =>
      `${envd.baseUrl}/files?${new URLSearchParams(params).toString()}`;
    expect((await fetch(url({ path }))).status).toBe(401);
    const withHeader = await fetch(url({ path }), { headers: { 'X-Access-Token': token } });
    expect(withHeader.status).toBe(200);
    expect(await withHeader.text()).toBe('signed content');

    const expiration = String(Math.floor(Date.now() / 1000) + 60);
    const signature = fileSignature(
      { path, operation: 'read', username: '', expiration: Number(expiration) },
      token,
    );
    const signed = await fetch(url({ path, signature, signature_expiration: expiration }));
    expect(signed.status).toBe(200);
    expect(await signed.text()).toBe('signed content');

    const past = String(Math.floor(Date.now() / 1000) - 60);
    const expired = fileSignature({ path, operation: 'read', username: '', expiration: Number(past) }, token);
    expect((await fetch(url({ path, signature: expired, signature_expiration: past }))).status).toBe(401);
    // A read signature does not allow writing.
    const write = await fetch(url({ path, signature, signature_expiration: expiration }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: 'overwrite',
    });
    expect(write.status).toBe(401);
    const writeSig = fileSignature({ path, operation: 'write', username: '' }, token);
    const written = await fetch(url({ path, signature: writeSig }), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: 'overwrite',
    });
    expect(written.status).toBe(200);
  });
});

describe('quiesce and resume', () => {
  it('drops listeners and connections while processes keep running, then serves again', async () => {
    const stream = envd.process.start(sh('for i in $(seq 1 40); do echo $i; sleep 0.05; done'));
    const iter = stream[Symbol.asyncIterator]();
    const first = await iter.next();
    const event = first.done ? undefined : first.value.event?.event;
    const pid = event?.case === 'start' ? event.value.pid : 0;
    expect(pid).toBeGreaterThan(0);
    const rest = (async () => {
      for (let r = await iter.next(); !r.done; r = await iter.next());
    })();

    await envd.server.quiesce();
    expect(envd.server.isListening).toBe(false);
    // The open stream was cut and nothing listens.
    await expect(rest).rejects.toThrow();
    await expect(fetch(`${envd.baseUrl}/health`)).rejects.toThrow();
    expect(isAlive(pid)).toBe(true);

    await envd.server.resume();
    expect((await fetch(`${envd.baseUrl}/health`)).status).toBe(204);
    const run = await collect(envd.process.connect({ process: { selector: { case: 'pid', value: pid } } }));
    expect(run.stdout.trimEnd().split('\n')).toEqual(Array.from({ length: 40 }, (_, i) => String(i + 1)));
    expect(run.end?.exitCode).toBe(0);
  });
});
