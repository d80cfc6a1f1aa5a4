import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import { EnvdClient } from './envd-client.js';

// EnvdClient.upload against a real HTTP server standing in for envd's POST /files: the ways an
// upload ends early must reject the call and nothing else (an unhandled rejection ends the agent).
let server: http.Server;
let received: number[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url?.includes('early')) {
      // Like envd refusing a file before reading its body (a bad path, a full disk).
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ code: 413, message: 'no space left' }));
      return;
    }
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.byteLength));
    req.on('end', () => {
      received.push(bytes);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

beforeEach(() => {
  received = [];
  unhandled.length = 0;
  process.on('unhandledRejection', onUnhandled);
});

afterEach(async () => {
  // Rejections are reported after the microtask queue drains.
  await sleep(50);
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

const client = () => new EnvdClient('127.0.0.1', (server.address() as AddressInfo).port, 'token');

async function* chunks(count: number, failAfter?: Error): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < count; i++) {
    yield Buffer.alloc(64 * 1024, i);
    await sleep(1);
  }
  if (failAfter) throw failAfter;
}

describe('EnvdClient.upload', () => {
  it('sends every chunk and answers the byte count', async () => {
    const envd = client();
    await expect(envd.upload('/f', 'user', chunks(20))).resolves.toBe(20 * 64 * 1024);
    expect(received).toEqual([20 * 64 * 1024]);
    envd.close();
  });

  it('rejects with the source’s error when the source fails midway', async () => {
    const envd = client();
    const cutOff = new Error('client went away');
    await expect(envd.upload('/f', 'user', chunks(5, cutOff))).rejects.toBe(cutOff);
    // The connection stays usable for the next request.
    await expect(envd.upload('/g', 'user', chunks(2))).resolves.toBe(2 * 64 * 1024);
    envd.close();
  });

  it('rejects when the signal aborts midway', async () => {
    const envd = client();
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('cancelled by caller')), 20);
    await expect(envd.upload('/f', 'user', chunks(1000), abort.signal)).rejects.toThrow();
    envd.close();
  });

  it('carries an answer envd sent before reading the body', async () => {
    const envd = client();
    const err = await envd.upload('/early', 'user', chunks(400)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((err as ConnectError).message).toContain('no space left');
    envd.close();
  });
});

describe('EnvdClient.waitHealthy', () => {
  it('gives up on a connection that never answers and tries a fresh one, well within 1 s', async () => {
    // Like a restored sandbox whose first SYN was lost: the first connection hangs.
    let connections = 0;
    const health = http.createServer((_req, res) => {
      if (++connections === 1) return;
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => health.listen(0, '127.0.0.1', resolve));
    const envd = new EnvdClient('127.0.0.1', (health.address() as AddressInfo).port, 'token');
    try {
      // An overall deadline of 900 ms: with 1 s per attempt the hanging one would use it all.
      await envd.waitHealthy(900);
      expect(connections).toBe(2);
    } finally {
      envd.close();
      health.closeAllConnections();
      await new Promise<void>((resolve) => health.close(() => resolve()));
    }
  });

  it('calls onRefused once when nothing listens', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const envd = new EnvdClient('127.0.0.1', port, 'token');
    let woken = 0;
    const err = await envd
      .waitHealthy(300, undefined, undefined, () => {
        woken++;
        return Promise.resolve();
      })
      .catch((e: unknown) => e);
    envd.close();
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(woken).toBe(1);
  });
});
