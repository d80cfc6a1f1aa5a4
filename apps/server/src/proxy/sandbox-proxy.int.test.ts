import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@wrenn/core';
import { SessionTokens } from '../auth/tokens.js';
import { upgradeRequestHead } from './headers.js';
import { createSandboxProxy, type ResolveResult } from './sandbox-proxy.js';

// Everything on real sockets on 127.0.0.1: a client, an HTTP server that hands sandbox traffic to
// the proxy (the way serveApp will), and target servers standing in for ports inside sandboxes.

const MB = 1024 * 1024;

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Sandbox id → address; ids not listed are gone. */
const sandboxes = new Map<string, string>([
  ['sbx1sbx1', '127.0.0.1'],
  ['abc123abc', '127.0.0.1'],
]);
const resolve = vi.fn((id: string): Promise<ResolveResult> => {
  const host = sandboxes.get(id);
  return Promise.resolve(host ? { kind: 'target', host } : { kind: 'gone' });
});
const activity = vi.fn((_id: string) => undefined);
const proxy = createSandboxProxy({ resolve, activity, logger: silentLogger() });

// What each target saw, for the tests that look from the sandbox's side.
const targetEvents = { holdClosed: 0, uploadAborted: 0 };
let maxUploadLag = 0;
let uploadProduced = 0;

let front: http.Server;
let target: http.Server;
let frontPort: number;
let targetPort: number;
let closedPort: number;
let releaseSecondChunk: () => void = () => undefined;
let headersSeen = false;

beforeAll(async () => {
  target = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    switch (url.pathname) {
      case '/slow': {
        // Headers now, the first chunk only once the client saw the headers, the second once it
        // saw the first: a buffering proxy would deadlock here.
        res.writeHead(200, { 'content-type': 'application/connect+json' });
        res.flushHeaders();
        const second = new Promise<void>((r) => (releaseSecondChunk = r));
        void waitFor(() => headersSeen).then(() => {
          res.write('first\n');
          void second.then(() => res.end('second\n'));
        });
        return;
      }
      case '/upload': {
        let received = 0;
        req.on('data', (chunk: Buffer) => {
          received += chunk.length;
          maxUploadLag = Math.max(maxUploadLag, uploadProduced - received);
        });
        req.on('aborted', () => targetEvents.uploadAborted++);
        req.on('end', () => res.end(JSON.stringify({ received })));
        return;
      }
      case '/download': {
        const total = Number(url.searchParams.get('mb')) * MB;
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
        Readable.from(chunks(total)).pipe(res);
        return;
      }
      case '/hold':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('held\n');
        res.on('close', () => targetEvents.holdClosed++);
        return;
      case '/cut':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial\n');
        setTimeout(() => res.socket?.destroy(), 50);
        return;
      default: {
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => {
          const echo: Echo = {
            method: req.method ?? '',
            url: req.url ?? '',
            headers: req.headers,
            body: Buffer.concat(parts).toString(),
          };
          res.writeHead(200, {
            'content-type': 'application/json',
            connection: 'x-resp-hop',
            'x-resp-hop': 'dropped',
            'x-resp-kept': 'kept',
            'set-cookie': ['a=1', 'b=2'],
          });
          res.end(JSON.stringify(echo));
        });
      }
    }
  });
  front = http.createServer((req, res) => {
    const to = proxy.route(req);
    if (to) proxy.handleRequest(req, res, to);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('api');
  });
  front.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => {
    const to = proxy.route(req);
    if (to) proxy.handleUpgrade(req, socket, head, to);
    else socket.destroy();
  });
  targetPort = await listen(target);
  frontPort = await listen(front);
  // A port nothing listens on: bound, noted, released.
  const probe = net.createServer();
  closedPort = await listen(probe);
  await new Promise((r) => probe.close(r));
});

afterAll(async () => {
  front.closeAllConnections();
  target.closeAllConnections();
  await Promise.all([new Promise((r) => front.close(r)), new Promise((r) => target.close(r))]);
});

beforeEach(() => {
  resolve.mockClear();
  activity.mockClear();
});

describe('the sandbox proxy', () => {
  it('routes by the E2b-Sandbox-* headers and forwards method, path, query, headers and body', async () => {
    const res = await call({
      method: 'POST',
      path: '/a/b?x=1&y=%20',
      headers: {
        'E2b-Sandbox-Id': 'sbx1sbx1',
        'E2B-SANDBOX-PORT': String(targetPort),
        'content-type': 'application/json',
        'x-custom': 'yes',
        // Hop-by-hop, including one named by Connection: none may reach the sandbox.
        connection: 'keep-alive, x-hop',
        'x-hop': '1',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic eDp5',
        te: 'trailers',
        'x-forwarded-for': '10.0.0.9',
      },
      body: '{"hello":"world"}',
    });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as Echo;
    expect(echo).toMatchObject({ method: 'POST', url: '/a/b?x=1&y=%20', body: '{"hello":"world"}' });
    expect(echo.headers).toMatchObject({
      host: `127.0.0.1:${targetPort}`,
      'x-custom': 'yes',
      'content-type': 'application/json',
      'content-length': '17',
      'e2b-sandbox-id': 'sbx1sbx1',
      'x-forwarded-for': '10.0.0.9, 127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': `127.0.0.1:${frontPort}`,
    });
    for (const name of ['x-hop', 'keep-alive', 'proxy-authorization', 'te']) {
      expect(echo.headers[name], name).toBeUndefined();
    }
    // And on the way back: hop-by-hop dropped, repeated headers kept apart.
    expect(res.headers['x-resp-hop']).toBeUndefined();
    expect(res.headers['x-resp-kept']).toBe('kept');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(resolve).toHaveBeenCalledWith('sbx1sbx1');
  });

  it("strips the control plane's credentials, keeps envd's and the sandbox apps' own (HTTP and upgrades)", async () => {
    const wrennJwt = await new SessionTokens('a-secret-that-is-long-enough-for-hs256!!').issue(
      '00000000-0000-4000-8000-000000000000',
    );
    const foreignJwt = `e30.${Buffer.from(JSON.stringify({ iss: 'someone-else' })).toString('base64url')}.x`;
    const seen = async (headers: Record<string, string>) => {
      const res = await call({
        path: '/who',
        headers: { 'E2b-Sandbox-Id': 'sbx1sbx1', 'E2b-Sandbox-Port': String(targetPort), ...headers },
      });
      expect(res.status).toBe(200);
      return (JSON.parse(res.body) as Echo).headers;
    };
    // Wrenn's own: an API key (either header), a session token.
    const wrennCredentials: Record<string, string>[] = [
      { 'X-API-Key': 'wrn_secret', authorization: 'Bearer wrn_secret' },
      { 'x-api-key': 'wrn_secret', authorization: `Bearer ${wrennJwt}` },
      { 'X-API-KEY': 'wrn_secret', authorization: `bearer  ${wrennJwt}` },
    ];
    for (const headers of wrennCredentials) {
      const got = await seen({ ...headers, 'x-access-token': 'envd-token', cookie: 'app=1' });
      expect(got['x-api-key'], JSON.stringify(headers)).toBeUndefined();
      expect(got.authorization, JSON.stringify(headers)).toBeUndefined();
      // Positive control: envd's token and the app's cookie went through on the same request.
      expect(got['x-access-token']).toBe('envd-token');
      expect(got.cookie).toBe('app=1');
    }
    // The sandbox's own: envd's Basic user, another issuer's bearer token.
    expect((await seen({ authorization: 'Basic cm9vdDo=' })).authorization).toBe('Basic cm9vdDo=');
    expect((await seen({ authorization: `Bearer ${foreignJwt}` })).authorization).toBe(
      `Bearer ${foreignJwt}`,
    );

    const upgrade = new http.IncomingMessage(new net.Socket());
    upgrade.method = 'GET';
    upgrade.url = '/ws';
    upgrade.headers = { host: 'x' };
    upgrade.rawHeaders = [
      'Host',
      'x',
      'Connection',
      'Upgrade',
      'Upgrade',
      'websocket',
      'X-API-Key',
      'wrn_secret',
      'Authorization',
      `Bearer ${wrennJwt}`,
      'X-Access-Token',
      'envd-token',
    ];
    const head = upgradeRequestHead(upgrade, { host: '127.0.0.1', port: 49983 }).toLowerCase();
    expect(head).not.toContain('wrn_secret');
    expect(head).not.toContain('authorization');
    expect(head).toContain('x-access-token: envd-token');
    expect(head).toContain('upgrade: websocket');
  });

  it('keeps a chunked body chunked, also for methods Node sends unframed by default', async () => {
    for (const method of ['POST', 'DELETE']) {
      const res = await call({
        method,
        path: '/chunked',
        // Explicit: this client would send a DELETE body unframed too.
        headers: {
          'e2b-sandbox-id': 'sbx1sbx1',
          'e2b-sandbox-port': String(targetPort),
          'transfer-encoding': 'chunked',
        },
        body: Readable.from(['part one, ', 'part two']),
      });
      expect(res.status, method).toBe(200);
      const echo = JSON.parse(res.body) as Echo;
      expect(echo.body, method).toBe('part one, part two');
      expect(echo.headers['transfer-encoding'], method).toBe('chunked');
    }
  });

  it('routes by the left-most label of Host', async () => {
    const res = await call({
      path: '/by-host',
      headers: { host: `${targetPort}-abc123abc.wrenn.test:9999` },
    });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as Echo;
    expect(echo.url).toBe('/by-host');
    expect(echo.headers['x-forwarded-host']).toBe(`${targetPort}-abc123abc.wrenn.test:9999`);
    expect(resolve).toHaveBeenCalledWith('abc123abc');
    expect(proxy.route(fakeRequest({ host: '8080-abc123abc.wrenn.test:9999' }))).toEqual({
      sandboxId: 'abc123abc',
      port: 8080,
    });
  });

  it('leaves other traffic alone', async () => {
    for (const host of ['localhost', `127.0.0.1:${frontPort}`, 'api.wrenn.test', 'sandbox.wrenn.test']) {
      const res = await call({ path: '/v1/sandboxes', headers: { host } });
      expect(res.status, host).toBe(404);
      expect(res.body).toBe('api');
    }
    expect(resolve).not.toHaveBeenCalled();
  });

  it('answers 400 for half or malformed routing headers', async () => {
    const cases: OutgoingHttpHeaders[] = [
      { 'e2b-sandbox-id': 'sbx1sbx1' },
      { 'e2b-sandbox-port': String(targetPort) },
      { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': '0' },
      { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': '65536' },
      { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': 'http' },
      { 'e2b-sandbox-id': 'SBX1', 'e2b-sandbox-port': String(targetPort) },
    ];
    for (const headers of cases) {
      const res = await call({ path: '/', headers });
      expect(res.status, JSON.stringify(headers)).toBe(400);
      expect(res.headers['content-type']).toBe('application/json');
      const body = JSON.parse(res.body) as { code: number; message: string };
      expect(Object.keys(body).sort()).toEqual(['code', 'message']);
      expect(body.code).toBe(400);
      expect(body.message).toMatch(/E2b-Sandbox-/);
    }
    expect(resolve).not.toHaveBeenCalled();
  });

  it('answers 502 in E2B’s shape when the sandbox is gone or its port is closed', async () => {
    const gone = await call({
      path: '/health',
      headers: { 'e2b-sandbox-id': 'nosuch00', 'e2b-sandbox-port': '49983' },
    });
    expect(gone.status).toBe(502);
    expect(gone.headers['content-type']).toBe('application/json');
    expect(JSON.parse(gone.body)).toEqual({
      sandboxId: 'nosuch00',
      message: 'The sandbox was not found',
      code: 502,
    });

    const closed = await call({ path: '/health', headers: { host: `${closedPort}-sbx1sbx1.wrenn.test` } });
    expect(closed.status).toBe(502);
    expect(JSON.parse(closed.body)).toEqual({
      sandboxId: 'sbx1sbx1',
      message: `The sandbox is not reachable on port ${closedPort}`,
      code: 502,
    });
  });

  it('reuses a resolved address for a second, forgets it after a connection error, never keeps "gone"', async () => {
    const headers = { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) };
    await sleep(1100); // past any address cached by earlier tests
    for (let i = 0; i < 5; i++) expect((await call({ path: '/', headers })).status).toBe(200);
    expect(resolve).toHaveBeenCalledTimes(1);

    // Same sandbox, a closed port: the failure drops the cached address, so the next request asks again.
    const closed = { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(closedPort) };
    expect((await call({ path: '/', headers: closed })).status).toBe(502);
    expect(resolve).toHaveBeenCalledTimes(1);
    expect((await call({ path: '/', headers })).status).toBe(200);
    expect(resolve).toHaveBeenCalledTimes(2);

    resolve.mockClear();
    const gone = { 'e2b-sandbox-id': 'nosuch00', 'e2b-sandbox-port': '49983' };
    for (let i = 0; i < 3; i++) expect((await call({ path: '/', headers: gone })).status).toBe(502);
    expect(resolve).toHaveBeenCalledTimes(3);
  });

  it('retries a body-less request once when a kept-alive connection turns out dead', async () => {
    // Stands in for a sandbox that dropped an idle connection just as the proxy reused it: the second
    // request on any connection is answered with a TCP reset.
    const served = new WeakMap<net.Socket, number>();
    const flaky = http.createServer((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1) req.socket.resetAndDestroy();
      else res.end(`ok ${req.method ?? ''}`);
    });
    const port = await listen(flaky);
    try {
      const headers = { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(port) };
      for (let i = 0; i < 3; i++) {
        const res = await call({ path: '/', headers });
        expect(res.status, `request ${i}`).toBe(200);
        expect(res.body).toBe('ok GET');
      }
    } finally {
      flaky.closeAllConnections();
      await new Promise((r) => flaky.close(r));
    }
  });

  it('shares one lookup between concurrent requests', async () => {
    await sleep(1100);
    const headers = { 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': String(targetPort) };
    const all = await Promise.all(Array.from({ length: 10 }, () => call({ path: '/', headers })));
    expect(all.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(resolve).toHaveBeenCalledTimes(1);
  });

  it('reports activity at most once per 5 s per sandbox', async () => {
    const a = { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) };
    const b = { host: `${targetPort}-abc123abc.wrenn.test` };
    // Earlier tests may have touched these within the window: start from a fresh proxy.
    const calls: string[] = [];
    const local = createSandboxProxy({
      resolve,
      activity: (id) => {
        calls.push(id);
        throw new Error('ignored');
      },
      logger: silentLogger(),
    });
    const server = http.createServer((req, res) => {
      const to = local.route(req);
      if (to) local.handleRequest(req, res, to);
      else res.writeHead(404).end();
    });
    const port = await listen(server);
    try {
      for (let i = 0; i < 20; i++) {
        expect((await call({ path: '/', headers: i % 2 ? a : b }, port)).status).toBe(200);
      }
      expect(calls.sort()).toEqual(['abc123abc', 'sbx1sbx1']);
      // Gone sandboxes are not active.
      await call({ path: '/', headers: { 'e2b-sandbox-id': 'nosuch00', 'e2b-sandbox-port': '1' } }, port);
      expect(calls).toHaveLength(2);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  // A proxy that buffers deadlocks here; the short timeout makes that a quick failure.
  it('streams a response as it comes: headers first, then each chunk', { timeout: 10_000 }, async () => {
    headersSeen = false;
    const req = http.request({
      port: frontPort,
      host: '127.0.0.1',
      path: '/slow',
      headers: { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) },
      agent: false,
    });
    req.end();
    const res = await new Promise<IncomingMessage>((r) => req.once('response', r));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/connect+json');
    headersSeen = true;
    let ended = false;
    res.once('end', () => (ended = true));
    const first = await new Promise<string>((r) => res.once('data', (c: Buffer) => r(c.toString())));
    expect(first).toBe('first\n');
    expect(ended).toBe(false);
    releaseSecondChunk();
    const rest = await text(res);
    expect(rest).toBe('second\n');
  });

  it('streams a 200 MB upload and a 200 MB download without holding them', async () => {
    const total = 200 * MB;
    maxUploadLag = 0;
    uploadProduced = 0;
    const started = performance.now();
    const up = await call({
      method: 'PUT',
      path: '/upload',
      headers: {
        'e2b-sandbox-id': 'sbx1sbx1',
        'e2b-sandbox-port': String(targetPort),
        'content-length': String(total),
      },
      body: Readable.from(chunks(total, (n) => (uploadProduced += n))),
    });
    const upMs = performance.now() - started;
    expect(up.status).toBe(200);
    expect(JSON.parse(up.body)).toEqual({ received: total });
    // Bytes the client had produced but the sandbox had not yet seen: socket buffers and stream
    // high-water marks, never the body.
    expect(maxUploadLag).toBeLessThan(32 * MB);

    const downStart = performance.now();
    const req = http.request({
      port: frontPort,
      host: '127.0.0.1',
      path: '/download?mb=200',
      headers: { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) },
      agent: false,
    });
    req.end();
    const res = await new Promise<IncomingMessage>((r) => req.once('response', r));
    expect(res.headers['content-length']).toBe(String(total));
    let received = 0;
    for await (const chunk of res) received += (chunk as Buffer).length;
    const downMs = performance.now() - downStart;
    expect(received).toBe(total);
    console.info(
      `200 MB through the proxy: upload ${Math.round(upMs)} ms, download ${Math.round(downMs)} ms; ` +
        `max upload in flight ${(maxUploadLag / MB).toFixed(1)} MB`,
    );
  });

  it('aborts the sandbox side when the client goes away, and the client side when the sandbox does', async () => {
    // A client that leaves mid-response.
    const before = targetEvents.holdClosed;
    const req = http.request({
      port: frontPort,
      host: '127.0.0.1',
      path: '/hold',
      headers: { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) },
      agent: false,
    });
    req.on('error', () => undefined);
    req.end();
    const res = await new Promise<IncomingMessage>((r) => req.once('response', r));
    await new Promise((r) => res.once('data', r));
    req.destroy();
    await waitFor(() => targetEvents.holdClosed > before);

    // A client that leaves mid-upload.
    const abortedBefore = targetEvents.uploadAborted;
    const upload = http.request({
      port: frontPort,
      host: '127.0.0.1',
      method: 'PUT',
      path: '/upload',
      headers: { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) },
      agent: false,
    });
    upload.on('error', () => undefined);
    upload.write(Buffer.alloc(MB));
    await sleep(100);
    upload.destroy();
    await waitFor(() => targetEvents.uploadAborted > abortedBefore);

    // A sandbox that leaves mid-response: the client sees a cut stream, not a clean end.
    const cut = http.request({
      port: frontPort,
      host: '127.0.0.1',
      path: '/cut',
      headers: { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(targetPort) },
      agent: false,
    });
    cut.end();
    const cutRes = await new Promise<IncomingMessage>((r) => cut.once('response', r));
    expect(cutRes.statusCode).toBe(200);
    await expect(text(cutRes)).rejects.toThrow(/aborted|ECONNRESET/);
  });
});

// ---- helpers

interface CallOptions {
  method?: string;
  path: string;
  headers?: OutgoingHttpHeaders;
  body?: string | Readable;
}

interface CallResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on its own connection (no agent), so tests never share a socket. */
async function call(opts: CallOptions, port = frontPort): Promise<CallResult> {
  const req = http.request({
    host: '127.0.0.1',
    port,
    method: opts.method ?? 'GET',
    path: opts.path,
    headers: opts.headers,
    agent: false,
  });
  const response = new Promise<IncomingMessage>((r, j) => req.once('response', r).once('error', j));
  if (opts.body instanceof Readable) opts.body.pipe(req);
  else req.end(opts.body);
  const res = await response;
  return { status: res.statusCode ?? 0, headers: res.headers, body: await text(res) };
}

async function text(res: IncomingMessage): Promise<string> {
  let out = '';
  for await (const chunk of res) out += (chunk as Buffer).toString();
  return out;
}

/** `total` bytes in 64 KiB chunks, made as they are read. */
function* chunks(total: number, onChunk: (n: number) => void = () => undefined): Generator<Buffer> {
  const block = Buffer.alloc(64 * 1024, 1);
  for (let left = total; left > 0; left -= block.length) {
    const chunk = left >= block.length ? block : block.subarray(0, left);
    onChunk(chunk.length);
    yield chunk;
  }
}

async function listen(server: http.Server | net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}

function fakeRequest(headers: http.IncomingHttpHeaders): IncomingMessage {
  const req = new http.IncomingMessage(new net.Socket());
  req.headers = headers;
  return req;
}
