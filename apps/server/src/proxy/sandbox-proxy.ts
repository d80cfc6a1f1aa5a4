import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { pipeline, type Duplex } from 'node:stream';
import type { Logger } from '@wrenn/core';

/**
 * Sandbox traffic (E2B-compatible): requests for `<port>-<sandboxId>.<domain>`, or carrying the
 * `E2b-Sandbox-Id` / `E2b-Sandbox-Port` headers, are streamed to that port inside the sandbox.
 * See shared/E2B_WIRE_SPEC.md §1.3–1.5.
 *
 * Wiring: for each request (and each `upgrade`), call `route(req)`; undefined means normal API
 * traffic, anything else goes to `handleRequest` / `handleUpgrade` unchanged. A malformed routing
 * attempt comes back from `route` as `{ error }` so that the 400 is answered by the handlers and
 * the caller needs no branch of its own.
 */

export interface SandboxTarget {
  host: string;
  port: number;
}

export type ResolveResult =
  | { kind: 'target'; host: string } // sandbox running: its address (IP/host) on this machine
  | { kind: 'gone' }; // unknown, paused without auto-resume, stopped

export interface SandboxProxyDeps {
  /** Where sandbox `id` can be reached now (may resume it first); called per request, so cache inside the proxy for ~1 s per id, and drop the cache entry on a connection error. */
  resolve(sandboxId: string): Promise<ResolveResult>;
  /** Traffic to a sandbox counts as activity; call at most once per 5 s per sandbox, fire-and-forget (errors ignored). */
  activity(sandboxId: string): void;
  logger: Logger;
}

/** A request that is for a sandbox. */
export interface SandboxAddress {
  sandboxId: string;
  port: number;
}

/** A request that tried to address a sandbox but did so wrongly; the handlers answer it 400. */
export interface SandboxRouteError {
  error: string;
}

export type SandboxRoute = SandboxAddress | SandboxRouteError;

export interface SandboxProxy {
  /** The sandbox and port a request is for, `{ error }` when it addresses one wrongly, or undefined when it is not sandbox traffic. */
  route(req: IncomingMessage): SandboxRoute | undefined;
  handleRequest(req: IncomingMessage, res: ServerResponse, to: SandboxRoute): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, to: SandboxRoute): void;
}

export interface SandboxProxyOptions {
  /** How long a resolved address is reused (ms). */
  cacheMs?: number;
  /** Least time between two `activity` calls for one sandbox (ms). */
  activityIntervalMs?: number;
  /** How long to wait for a TCP connection to the sandbox before answering 502 (ms). */
  connectTimeoutMs?: number;
}

const SANDBOX_ID = /^[a-z0-9]{1,64}$/;
const PORT = /^\d{1,5}$/;
const HOST_LABEL = /^(\d+)-([a-z0-9]+)$/;

// RFC 9110 §7.6.1 plus the legacy ones; `proxy-*` is matched by prefix. They describe one
// connection, so they never cross the proxy (the upgrade path keeps connection/upgrade itself).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
// Node answers `Expect: 100-continue` itself before the handler runs, so the client is already
// sending; forwarding it would only let the sandbox refuse (417) a body that is on its way.
const NOT_FORWARDED = new Set(['host', 'expect']);

/** The routing rules, without the proxy: exported for tests and for callers that only classify. */
export function routeSandboxRequest(headers: IncomingHttpHeaders): SandboxRoute | undefined {
  const idHeader = single(headers['e2b-sandbox-id']);
  const portHeader = single(headers['e2b-sandbox-port']);
  if (idHeader !== undefined || portHeader !== undefined) {
    if (idHeader === undefined) return { error: 'E2b-Sandbox-Port given without E2b-Sandbox-Id' };
    if (portHeader === undefined) return { error: 'E2b-Sandbox-Id given without E2b-Sandbox-Port' };
    // Node joins repeated custom headers with ", ", which then fails the patterns below.
    if (!SANDBOX_ID.test(idHeader)) return { error: 'E2b-Sandbox-Id: must be 1-64 characters of [a-z0-9]' };
    const port = parsePort(portHeader);
    if (port === undefined) return { error: 'E2b-Sandbox-Port: must be an integer from 1 to 65535' };
    return { sandboxId: idHeader, port };
  }
  const host = headers.host;
  if (!host) return undefined;
  // DNS names are case-insensitive, so `49983-ABC.example` is the same host as `49983-abc.example`.
  const label = (host.split('.')[0] ?? '').replace(/:\d*$/, '').toLowerCase();
  const match = HOST_LABEL.exec(label);
  if (!match) return undefined;
  const [, portText = '', sandboxId = ''] = match;
  const port = parsePort(portText);
  if (port === undefined) return { error: `host: port ${portText} is not from 1 to 65535` };
  if (sandboxId.length > 64) return { error: 'host: the sandbox id is longer than 64 characters' };
  return { sandboxId, port };
}

// Node joins a repeated custom header with ", " (which then fails validation); its types still
// allow an array, read here as the same thing.
function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function parsePort(text: string): number | undefined {
  if (!PORT.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

export function createSandboxProxy(deps: SandboxProxyDeps, options: SandboxProxyOptions = {}): SandboxProxy {
  const { logger } = deps;
  const cacheMs = options.cacheMs ?? 1000;
  const activityIntervalMs = options.activityIntervalMs ?? 5000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  // Keep-alive: the SDK makes many small envd calls per operation; a fresh TCP handshake for each
  // would dominate their latency. Free sockets are unref'd by Node, so this never holds the
  // process open. No socket timeout: Connect server-streams and downloads may idle for minutes.
  const agent = new http.Agent({ keepAlive: true });

  interface CacheEntry {
    result: Promise<ResolveResult>;
    /** Infinity while resolving, so concurrent requests share one lookup (and one auto-resume). */
    expires: number;
  }
  const cache = new Map<string, CacheEntry>();
  const lastActivity = new Map<string, number>();

  function lookup(sandboxId: string): Promise<ResolveResult> {
    const now = Date.now();
    const cached = cache.get(sandboxId);
    if (cached && cached.expires > now) return cached.result;
    const entry: CacheEntry = { result: deps.resolve(sandboxId), expires: Infinity };
    cache.set(sandboxId, entry);
    if (cache.size > 4096) sweep(cache, (e) => e.expires <= now);
    entry.result.then(
      (result) => {
        // `gone` is not kept: right after a resume or create the SDK talks to envd at once, and a
        // remembered "not found" would fail that call.
        if (result.kind === 'target') entry.expires = Date.now() + cacheMs;
        else forget(sandboxId, entry);
      },
      () => forget(sandboxId, entry),
    );
    return entry.result;
  }

  function forget(sandboxId: string, entry?: CacheEntry): void {
    if (!entry || cache.get(sandboxId) === entry) cache.delete(sandboxId);
  }

  /** Called on every request and on every chunk both ways: a long stream keeps its sandbox alive. */
  function touch(sandboxId: string): void {
    const now = Date.now();
    const last = lastActivity.get(sandboxId);
    if (last !== undefined && now - last < activityIntervalMs) return;
    lastActivity.set(sandboxId, now);
    if (lastActivity.size > 4096) sweep(lastActivity, (t) => now - t >= activityIntervalMs);
    try {
      deps.activity(sandboxId);
    } catch (err) {
      logger.debug({ sandboxId, err }, 'sandbox activity failed');
    }
  }

  /** Resolves to the target, or answers the client itself and resolves to undefined. */
  async function targetFor(
    to: SandboxAddress,
    fail: (status: number, body: object) => void,
  ): Promise<SandboxTarget | undefined> {
    let result: ResolveResult;
    try {
      result = await lookup(to.sandboxId);
    } catch (err) {
      // Not "not found": the SDK reads a 502 as "the sandbox stopped", and this is our fault.
      logger.error({ sandboxId: to.sandboxId, err }, 'resolving a sandbox for traffic failed');
      fail(503, { sandboxId: to.sandboxId, message: 'The sandbox could not be looked up', code: 503 });
      return undefined;
    }
    switch (result.kind) {
      case 'gone':
        fail(502, notFoundBody(to.sandboxId));
        return undefined;
      case 'target':
        return { host: result.host, port: to.port };
    }
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse, route: SandboxRoute): void {
    if ('error' in route) {
      sendJson(res, 400, { code: 400, message: route.error });
      return;
    }
    // Nested callbacks lose the narrowing.
    const to: SandboxAddress = route;
    let clientGone = false;
    let upstream: http.ClientRequest | undefined;
    res.once('close', () => {
      if (res.writableFinished) return;
      clientGone = true;
      upstream?.destroy();
    });
    req.on('error', () => undefined); // a client abort; `res` 'close' does the cleanup
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

    void targetFor(to, (status, body) => {
      if (!clientGone) sendJson(res, status, body);
    }).then((target) => {
      if (!target || clientGone) return;
      touch(to.sandboxId);
      send(target, false);
    });

    function send(target: SandboxTarget, isRetry: boolean): void {
      const headers = forwardHeaders(req, target, false);
      // A body of unknown length must stay chunked; Node would otherwise send it unframed for
      // methods such as GET or DELETE (and break the keep-alive connection).
      if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
      const up = http.request({
        host: target.host,
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
        agent,
      });
      upstream = up;
      up.setNoDelay(true);
      guardConnect(up, connectTimeoutMs);
      let responded = false;
      let failed = false;

      up.on('error', (err: NodeJS.ErrnoException) => {
        // Only the first error counts: the 502 below must not be cut by a later one.
        if (clientGone || failed) return;
        failed = true;
        req.unpipe(up);
        if (responded) {
          // Mid-response: the status line is gone, so the only honest signal is a cut stream.
          res.destroy();
          return;
        }
        // A keep-alive socket the sandbox closed while idle fails on first use; Node's documented
        // remedy is to retry, which is safe only when no body has been consumed.
        if (up.reusedSocket && err.code === 'ECONNRESET' && !hasBody && !isRetry) {
          send(target, true);
          return;
        }
        // Whatever failed before a response (refused, reset, timed out), the address may be stale.
        forget(to.sandboxId);
        logger.debug({ sandboxId: to.sandboxId, port: target.port, err }, 'sandbox port unreachable');
        sendJson(res, 502, unreachableBody(to.sandboxId, target.port));
      });

      up.on('response', (upRes) => {
        responded = true;
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, responseHeaders(upRes));
        // Long-lived streams (Connect server-streams) may not send a first message for a while; the
        // client should see the status and headers now, not with that message.
        res.flushHeaders();
        upRes.on('data', () => touch(to.sandboxId));
        pipeline(upRes, res, (err) => {
          if (err && !clientGone) {
            logger.debug({ sandboxId: to.sandboxId, err }, 'sandbox response cut');
            res.destroy();
          }
        });
      });

      if (!hasBody) {
        up.end();
        req.resume();
        return;
      }
      // Not `pipeline`: a client abort would then surface as an upstream error and be mistaken for
      // an unreachable sandbox; `res` 'close' destroys the upstream request instead.
      req.pipe(up);
      req.on('data', () => touch(to.sandboxId));
    }
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, route: SandboxRoute): void {
    socket.on('error', () => undefined); // torn down via 'close' below
    if ('error' in route) {
      rawReply(socket, 400, 'Bad Request', { code: 400, message: route.error });
      return;
    }
    const to: SandboxAddress = route;
    void targetFor(to, (status, body) =>
      rawReply(socket, status, status === 502 ? 'Bad Gateway' : 'Service Unavailable', body),
    ).then((target) => {
      if (!target) return;
      if (socket.destroyed) return;
      touch(to.sandboxId);
      tunnel(target);
    });

    function tunnel(target: SandboxTarget): void {
      const upstream = net.connect({ host: target.host, port: target.port, noDelay: true });
      let connected = false;
      const timer = setTimeout(() => upstream.destroy(timeoutError()), connectTimeoutMs);
      const onClientClose = () => upstream.destroy();
      socket.once('close', onClientClose);
      upstream.once('close', () => clearTimeout(timer));

      upstream.once('connect', () => {
        clearTimeout(timer);
        connected = true;
        socket.off('close', onClientClose);
        upstream.write(upgradeRequestHead(req, target));
        if (head.length > 0) upstream.write(head);
        socket.pipe(upstream);
        upstream.pipe(socket);
        socket.on('data', () => touch(to.sandboxId));
        upstream.on('data', () => touch(to.sandboxId));
        // Either side closing ends the other once its pending bytes are written (a WebSocket close
        // frame must still reach the peer); an error drops both at once.
        socket.once('close', () => closeGently(upstream));
        upstream.once('close', () => closeGently(socket));
        socket.on('error', () => upstream.destroy());
      });
      upstream.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (connected) {
          socket.destroy();
          return;
        }
        socket.off('close', onClientClose);
        if (socket.destroyed) return;
        forget(to.sandboxId);
        logger.debug(
          { sandboxId: to.sandboxId, port: target.port, err },
          'sandbox port unreachable (upgrade)',
        );
        rawReply(socket, 502, 'Bad Gateway', unreachableBody(to.sandboxId, target.port));
      });
    }
  }

  return { route: (req) => routeSandboxRequest(req.headers), handleRequest, handleUpgrade };
}

function notFoundBody(sandboxId: string): object {
  return { sandboxId, message: 'The sandbox was not found', code: 502 };
}

function unreachableBody(sandboxId: string, port: number): object {
  return { sandboxId, message: `The sandbox is not reachable on port ${port}`, code: 502 };
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function rawReply(socket: Duplex, status: number, reason: string, body: object): void {
  if (socket.destroyed) return;
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(text)}\r\n` +
      'Connection: close\r\n\r\n' +
      text,
  );
  closeGently(socket);
}

/** End `socket` after its queued bytes are written; destroy it if that takes too long. */
function closeGently(socket: Duplex): void {
  if (socket.destroyed) return;
  if (!socket.writableEnded) socket.end();
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  // A peer that stopped reading would keep 'finish' from ever firing.
  const timer = setTimeout(() => socket.destroy(), 10_000);
  timer.unref();
  socket.once('finish', () => socket.destroy());
  socket.once('close', () => clearTimeout(timer));
}

/** Request headers for the sandbox: hop-by-hop ones dropped (kept for upgrades), Host and X-Forwarded-* set. */
function forwardHeaders(
  req: IncomingMessage,
  target: SandboxTarget,
  upgrade: boolean,
): Record<string, string | string[]> {
  const dropped = connectionTokens(req.headers.connection);
  const headers = collect(req.rawHeaders, (name) => {
    if (NOT_FORWARDED.has(name) || name.startsWith('proxy-')) return false;
    if (upgrade)
      return name === 'connection' || name === 'upgrade' || !(HOP_BY_HOP.has(name) || dropped.has(name));
    return !(HOP_BY_HOP.has(name) || dropped.has(name));
  });
  headers.host = hostHeader(target);
  const client = req.socket.remoteAddress;
  const prior = headers['x-forwarded-for'];
  const priorText = Array.isArray(prior) ? prior.join(', ') : prior;
  if (client) headers['x-forwarded-for'] = priorText ? `${priorText}, ${client}` : client;
  // A TLS terminator in front of us knows the real scheme and host better than this hop does.
  headers['x-forwarded-proto'] ??= 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
  if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host;
  return headers;
}

function responseHeaders(upRes: IncomingMessage): Record<string, string | string[]> {
  const dropped = connectionTokens(upRes.headers.connection);
  return collect(
    upRes.rawHeaders,
    (name) => !(HOP_BY_HOP.has(name) || dropped.has(name) || name.startsWith('proxy-')),
  );
}

/** Lower-cased headers from `rawHeaders`, repeated ones kept as arrays (Node would join them). */
function collect(raw: string[], keep: (name: string) => boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    const value = raw[i + 1] ?? '';
    if (!keep(name)) continue;
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = [prior, value];
  }
  return out;
}

/** Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionTokens(value: string | undefined): Set<string> {
  const tokens = new Set<string>();
  for (const token of (value ?? '').split(',')) {
    const name = token.trim().toLowerCase();
    if (name) tokens.add(name);
  }
  return tokens;
}

function hostHeader(target: SandboxTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `${host}:${target.port}`;
}

function upgradeRequestHead(req: IncomingMessage, target: SandboxTarget): string {
  const headers = forwardHeaders(req, target, true);
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    // Values come from Node's parser (or from us), so they hold no CR/LF.
    for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`;
  }
  return `${text}\r\n`;
}

/** Fails the request if the TCP handshake takes too long: a dead sandbox IP may drop SYNs silently. */
function guardConnect(up: http.ClientRequest, ms: number): void {
  up.once('socket', (socket) => {
    if (!(socket instanceof net.Socket) || !socket.connecting) return;
    const timer = setTimeout(() => up.destroy(timeoutError()), ms);
    socket.once('connect', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  });
}

function timeoutError(): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error('connect timed out');
  err.code = 'ETIMEDOUT';
  return err;
}

function sweep<V>(map: Map<string, V>, stale: (value: V) => boolean): void {
  for (const [key, value] of map) if (stale(value)) map.delete(key);
}
