import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@wrenn/core';
import { createSandboxProxy, type ResolveResult, type SandboxProxy } from './sandbox-proxy.js';

// Network slots are reused: a sandbox created just after another was destroyed gets its address.
// The address below stands in for one slot; `slot.current` is the sandbox living there. A connection
// opened to an earlier sandbox is reset when it is used again (the new sandbox's network stack knows
// nothing of it), exactly what a kept-alive socket of a destroyed sandbox meets.

interface Slot {
  current: string;
  /** Connections opened, by the sandbox that accepted them. */
  opened: Map<string, number>;
  /** Connections of earlier sandboxes that were used again (and reset). */
  stale: number;
  /** Connections that were closed, by sandbox. */
  closed: Map<string, number>;
}

const slot: Slot = { current: '', opened: new Map(), stale: 0, closed: new Map() };
const owner = new WeakMap<Socket, string>();

/** Sandbox id → address; ids not listed are gone. */
const live = new Map<string, string>();
const resolve = vi.fn((id: string): Promise<ResolveResult> => {
  const host = live.get(id);
  return Promise.resolve(host ? { kind: 'target', host } : { kind: 'gone' });
});

let proxy: SandboxProxy;
let targets: http.Server[] = [];
let front: http.Server;
let targetPort: number;
let frontPort: number;

function slotServer(): http.Server {
  const target = http.createServer((req, res) => {
    if (owner.get(req.socket) !== slot.current) {
      slot.stale++;
      req.socket.resetAndDestroy();
      return;
    }
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => res.end(`${slot.current}:${body}`));
  });
  target.keepAliveTimeout = 60_000;
  target.on('connection', (socket: Socket) => {
    const id = slot.current;
    owner.set(socket, id);
    slot.opened.set(id, (slot.opened.get(id) ?? 0) + 1);
    socket.once('close', () => slot.closed.set(id, (slot.closed.get(id) ?? 0) + 1));
  });
  return target;
}

beforeAll(async () => {
  // The slot on 127.0.0.1, and the same port on 127.0.0.2 for a sandbox that moved.
  targets = [slotServer(), slotServer()];
  targetPort = await listen(targets[0]!);
  await listen(targets[1]!, '127.0.0.2', targetPort);
  front = http.createServer((req, res) => {
    const to = proxy.route(req);
    if (to) proxy.handleRequest(req, res, to);
    else res.writeHead(404).end();
  });
  frontPort = await listen(front);
});

afterAll(async () => {
  for (const server of [front, ...targets]) server.closeAllConnections();
  await Promise.all([front, ...targets].map((s) => new Promise((r) => s.close(r))));
});

beforeEach(() => {
  // A fresh proxy per test: its caches and connections start empty.
  proxy = createSandboxProxy({ resolve, activity: () => undefined, logger: silentLogger() });
  live.clear();
  resolve.mockClear();
  slot.opened.clear();
  slot.closed.clear();
  slot.stale = 0;
});

/** A sandbox starts in the slot (the one before it, if any, is gone). */
function place(id: string, host = '127.0.0.1'): void {
  for (const [other, h] of live) if (h === host) live.delete(other);
  live.set(id, host);
  slot.current = id;
}

describe('the sandbox proxy on a reused network slot', () => {
  it('never hands a kept-alive connection of a destroyed sandbox to the next one', async () => {
    // Many rounds, as the e2b SDK does them: a sandbox, a call with a body (a Connect call to envd),
    // the sandbox destroyed, the next one on the same address.
    for (let round = 0; round < 10; round++) {
      const id = `sbxround${round}`;
      place(id);
      for (let call = 0; call < 3; call++) {
        const res = await post(id, `call ${call}`);
        expect(res, `round ${round}, call ${call}`).toEqual({ status: 200, body: `${id}:call ${call}` });
      }
    }
    expect(slot.stale).toBe(0);
    // Connections are still reused within one sandbox.
    expect(Math.max(...slot.opened.values())).toBe(1);
  });

  it('drops a sandbox’s connections when it is released (paused, resumed, destroyed)', async () => {
    place('sbxpaused');
    expect(await post('sbxpaused', 'before')).toEqual({ status: 200, body: 'sbxpaused:before' });
    // Paused and resumed in the same slot: the same id and address, but a new network stack.
    proxy.release('sbxpaused');
    await eventually(() => expect(slot.closed.get('sbxpaused')).toBe(1));
    place('sbxpaused');
    slot.current = 'sbxpaused-resumed';
    expect(await post('sbxpaused', 'after')).toEqual({ status: 200, body: 'sbxpaused-resumed:after' });
    expect(slot.stale).toBe(0);
  });

  it('drops a sandbox’s connections once it resolves as gone or at another address', async () => {
    place('sbxmoving');
    expect((await post('sbxmoving', 'one')).status).toBe(200);
    // Gone: the next lookup (past the cache) says so, and its connections go with it.
    live.clear();
    await new Promise((r) => setTimeout(r, 1100));
    expect((await post('sbxmoving', 'two')).status).toBe(502);
    await eventually(() => expect(slot.closed.get('sbxmoving')).toBe(1));

    // Back at another address (resumed into another slot): a connection to the old one is dropped.
    place('sbxmoving', '127.0.0.1');
    slot.current = 'sbxmoving2';
    expect((await post('sbxmoving', 'three')).status).toBe(200);
    live.set('sbxmoving', '127.0.0.2');
    await new Promise((r) => setTimeout(r, 1100));
    expect((await post('sbxmoving', 'four')).status).toBe(200);
    await eventually(() => expect(slot.closed.get('sbxmoving2')).toBe(1));
    expect(slot.stale).toBe(0);
  });
});

describe('looking a sandbox up again', () => {
  it('happens behind steady traffic: no request waits for it, and an answer is used only while fresh', async () => {
    // Long enough that a loaded machine still sends each request inside the window it is meant for.
    const cacheMs = 2000;
    const answer: ResolveResult = { kind: 'target', host: '127.0.0.1' };
    // Lookups after the first answer only when the test says so: pending[i] answers lookup i + 2.
    const pending: ((r: ResolveResult) => void)[] = [];
    const lookups = vi.fn(
      () =>
        new Promise<ResolveResult>((r) => {
          if (lookups.mock.calls.length === 1) r(answer);
          else pending.push(r);
        }),
    );
    proxy = createSandboxProxy(
      { resolve: lookups, activity: () => undefined, logger: silentLogger() },
      { cacheMs },
    );
    place('sbxsteady');
    expect(await post('sbxsteady', 'one')).toEqual({ status: 200, body: 'sbxsteady:one' });
    // Past half the answer's life: it is still used, and looked up again meanwhile (once).
    await sleep(cacheMs * 0.6);
    expect(await post('sbxsteady', 'two')).toEqual({ status: 200, body: 'sbxsteady:two' });
    expect(await post('sbxsteady', 'three')).toEqual({ status: 200, body: 'sbxsteady:three' });
    expect(lookups).toHaveBeenCalledTimes(2);
    pending[0]!(answer);
    // Past the first answer's life, the second serves: again no request waited for a lookup.
    await sleep(cacheMs * 0.6);
    expect(await post('sbxsteady', 'four')).toEqual({ status: 200, body: 'sbxsteady:four' });
    expect(lookups).toHaveBeenCalledTimes(3);

    // That third lookup never answers, and the second answer runs out: it is not used any more,
    // the next request waits for a lookup of its own.
    await sleep(cacheMs * 0.6);
    const late = post('sbxsteady', 'five');
    await eventually(() => expect(lookups).toHaveBeenCalledTimes(4));
    pending[2]!(answer);
    expect(await late).toEqual({ status: 200, body: 'sbxsteady:five' });
    pending[1]!(answer); // too late to replace anything
    expect(await post('sbxsteady', 'six')).toEqual({ status: 200, body: 'sbxsteady:six' });
    expect(lookups).toHaveBeenCalledTimes(4);
  });
});

describe('warming the way to a sandbox that just started', () => {
  it('its first request finds the lookup made and a connection open', async () => {
    place('sbxwarmed');
    await proxy.warm('sbxwarmed', targetPort);
    expect(slot.opened.get('sbxwarmed')).toBe(1);
    expect(resolve).toHaveBeenCalledTimes(1);
    expect(await post('sbxwarmed', 'first')).toEqual({ status: 200, body: 'sbxwarmed:first' });
    // The same connection and the same lookup.
    expect(slot.opened.get('sbxwarmed')).toBe(1);
    expect(resolve).toHaveBeenCalledTimes(1);
  });

  it('does nothing for a sandbox that is gone, or one that does not answer', async () => {
    await proxy.warm('sbxnowhere', targetPort);
    expect(slot.opened.size).toBe(0);
    place('sbxdeafened');
    await proxy.warm('sbxdeafened', await unusedPort());
    expect(await post('sbxdeafened', 'still')).toEqual({ status: 200, body: 'sbxdeafened:still' });
  });
});

async function post(sandboxId: string, body: string): Promise<{ status: number; body: string }> {
  const req = http.request({
    host: '127.0.0.1',
    port: frontPort,
    method: 'POST',
    path: '/process.Process/Start',
    headers: {
      'e2b-sandbox-id': sandboxId,
      'e2b-sandbox-port': String(targetPort),
      'content-type': 'application/json',
    },
    agent: false,
  });
  const response = new Promise<IncomingMessage>((r, j) => req.once('response', r).once('error', j));
  req.end(body);
  const res = await response;
  let text = '';
  for await (const chunk of res) text += (chunk as Buffer).toString();
  return { status: res.statusCode ?? 0, body: res.statusCode === 200 ? text : '' };
}

/** A port nothing listens on (it did a moment ago). */
async function unusedPort(): Promise<number> {
  const server = http.createServer();
  const port = await listen(server);
  await new Promise((r) => server.close(r));
  return port;
}

async function listen(server: http.Server, host = '127.0.0.1', port = 0): Promise<number> {
  await new Promise<void>((r) => server.listen(port, host, r));
  return (server.address() as AddressInfo).port;
}

async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
