import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { silentLogger } from '@wrenn/core';
import { createSandboxProxy, type ResolveResult } from './sandbox-proxy.js';

// Upgrades through the proxy, on real sockets on 127.0.0.1: a client, a front server handing
// upgrades to the proxy (as serveApp does), and a WebSocket server standing in for a sandbox port.

const MB = 1024 * 1024;
const sandboxes = new Map<string, string>([
  ['sbx1sbx1', '127.0.0.1'],
  ['abc123abc', '127.0.0.1'],
]);
const proxy = createSandboxProxy({
  resolve: (id: string): Promise<ResolveResult> => {
    const host = sandboxes.get(id);
    return Promise.resolve(host ? { kind: 'target', host } : { kind: 'gone' });
  },
  activity: () => undefined,
  logger: silentLogger(),
});

let front: http.Server;
let wsTarget: WebSocketServer;
let frontPort: number;
let wsPort: number;
let closedPort: number;

beforeAll(async () => {
  wsTarget = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  const wsListening = new Promise((r) => wsTarget.once('listening', r));
  wsTarget.on('connection', (ws, req) => {
    ws.on('message', (data, isBinary) => {
      const bytes = toBuffer(data);
      if (isBinary) ws.send(bytes, { binary: true });
      else if (bytes.toString() === 'bye') ws.close(4001, 'bye');
      else ws.send(`${req.url ?? ''} ${bytes.toString()}`);
    });
  });
  front = http.createServer((_req, res) => res.writeHead(404).end());
  front.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => {
    const to = proxy.route(req);
    if (to) proxy.handleUpgrade(req, socket, head, to);
    else socket.destroy();
  });
  frontPort = await listen(front);
  await wsListening;
  wsPort = (wsTarget.address() as AddressInfo).port;
  // A port nothing listens on: bound, noted, released.
  const probe = net.createServer();
  closedPort = await listen(probe);
  await new Promise((r) => probe.close(r));
});

afterAll(async () => {
  front.closeAllConnections();
  await Promise.all([new Promise((r) => front.close(r)), new Promise((r) => wsTarget.close(r))]);
});

describe('the sandbox proxy, for upgrades', () => {
  it('tunnels WebSockets both ways, by header and by host', async () => {
    const byHeader = new WebSocket(`ws://127.0.0.1:${frontPort}/ws?x=1`, {
      headers: { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(wsPort) },
    });
    await new Promise((r, j) => byHeader.once('open', r).once('error', j));
    byHeader.send('hello');
    expect(await message(byHeader)).toBe('/ws?x=1 hello');
    const big = Buffer.alloc(4 * MB, 7);
    byHeader.send(big);
    expect(Buffer.compare(Buffer.from(await message(byHeader)), big)).toBe(0);
    // The sandbox closing its end reaches the client with its code and reason.
    byHeader.send('bye');
    const [code, reason] = await new Promise<[number, string]>((r) =>
      byHeader.once('close', (c, why) => r([c, why.toString()])),
    );
    expect([code, reason]).toEqual([4001, 'bye']);

    const byHost = new WebSocket(`ws://127.0.0.1:${frontPort}/h`, {
      headers: { host: `${wsPort}-abc123abc.wrenn.test` },
    });
    await new Promise((r, j) => byHost.once('open', r).once('error', j));
    byHost.send('hi');
    expect(await message(byHost)).toBe('/h hi');
    // And the client going away reaches the sandbox.
    const serverSide = [...wsTarget.clients].find((c) => c.readyState === WebSocket.OPEN);
    expect(serverSide).toBeDefined();
    const serverClosed = new Promise((r) => serverSide?.once('close', r));
    byHost.terminate();
    await serverClosed;
  });

  it('answers failed upgrades with a raw 502 or 400 and closes the socket', async () => {
    const cases: [OutgoingHttpHeaders, number, Record<string, unknown>][] = [
      [
        { 'e2b-sandbox-id': 'nosuch00', 'e2b-sandbox-port': '49983' },
        502,
        { sandboxId: 'nosuch00', message: 'The sandbox was not found', code: 502 },
      ],
      [
        { 'e2b-sandbox-id': 'sbx1sbx1', 'e2b-sandbox-port': String(closedPort) },
        502,
        { sandboxId: 'sbx1sbx1', message: `The sandbox is not reachable on port ${closedPort}`, code: 502 },
      ],
      [
        { 'e2b-sandbox-id': 'sbx1sbx1' },
        400,
        { code: 400, message: 'E2b-Sandbox-Id given without E2b-Sandbox-Port' },
      ],
    ];
    for (const [headers, status, body] of cases) {
      const ws = new WebSocket(`ws://127.0.0.1:${frontPort}/ws`, { headers });
      ws.on('error', () => undefined);
      const res = await new Promise<IncomingMessage>((r) =>
        ws.once('unexpected-response', (_req, res) => r(res)),
      );
      expect(res.statusCode).toBe(status);
      expect(res.headers['content-type']).toBe('application/json');
      expect(JSON.parse(await text(res))).toEqual(body);
    }
  });
});

async function text(res: IncomingMessage): Promise<string> {
  let out = '';
  for await (const chunk of res) out += (chunk as Buffer).toString();
  return out;
}

function message(ws: WebSocket): Promise<string | Buffer> {
  return new Promise((r) =>
    ws.once('message', (data, isBinary) => {
      const bytes = toBuffer(data);
      r(isBinary ? bytes : bytes.toString());
    }),
  );
}

function toBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? Buffer.from(data) : data;
}

async function listen(server: http.Server | net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}
