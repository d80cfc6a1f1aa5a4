import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { pipeline } from 'node:stream';
import { formatHostPort, type Logger } from '@wrenn/core';
import { forwardHeaders, responseHeaders } from './headers.js';
import { sendJson, timeoutError, unreachableBody } from './replies.js';
import type { SandboxAddress } from './routing.js';
import type { Target } from './target-cache.js';

/** What forwarding needs from the proxy around it. */
export interface ForwardContext {
  logger: Logger;
  connectTimeoutMs: number;
  /**
   * Resolves to the target, or answers the client itself (with `fail`) and resolves to undefined: a
   * private sandbox's traffic without its token (`headers`) is refused here.
   */
  targetFor(
    to: SandboxAddress,
    fail: (status: number, body: object) => void,
    headers: IncomingHttpHeaders,
  ): Promise<Target | undefined>;
  /** The sandbox's address may be stale, its connections dead: look again next time. */
  release(sandboxId: string): void;
  /** Traffic counts as activity (throttled by the caller). */
  touch(sandboxId: string): void;
}

/** One client request on its way to the sandbox. */
interface Exchange {
  ctx: ForwardContext;
  req: IncomingMessage;
  res: ServerResponse;
  to: SandboxAddress;
  hasBody: boolean;
  /** The client went away before its response was complete. */
  clientGone: boolean;
  upstream?: http.ClientRequest;
}

/**
 * Streams one HTTP request to a port inside the sandbox and its response back, both ways with
 * backpressure; hop-by-hop headers stay on their side.
 */
export function forwardRequest(
  ctx: ForwardContext,
  req: IncomingMessage,
  res: ServerResponse,
  to: SandboxAddress,
): void {
  const ex: Exchange = {
    ctx,
    req,
    res,
    to,
    hasBody: req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0,
    clientGone: false,
  };
  res.once('close', () => {
    if (res.writableFinished) return;
    ex.clientGone = true;
    ex.upstream?.destroy();
  });
  req.on('error', () => undefined); // a client abort; `res` 'close' does the cleanup

  void ctx
    .targetFor(
      to,
      (status, body) => {
        if (!ex.clientGone) sendJson(res, status, body);
      },
      req.headers,
    )
    .then((target) => {
      if (!target || ex.clientGone) return;
      ctx.touch(to.sandboxId);
      send(ex, target, false);
    });
}

function send(ex: Exchange, target: Target, isRetry: boolean): void {
  const { ctx, req, res, to } = ex;
  const headers = forwardHeaders(req, { host: target.host, port: to.port }, false);
  // A body of unknown length must stay chunked; Node would otherwise send it unframed for
  // methods such as GET or DELETE (and break the keep-alive connection).
  if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
  const up = http.request({
    host: target.host,
    port: to.port,
    method: req.method,
    path: req.url,
    headers,
    agent: target.agent,
  });
  ex.upstream = up;
  up.setNoDelay(true);
  guardConnect(up, ctx.connectTimeoutMs);
  let responded = false;
  let failed = false;

  up.on('error', (err: NodeJS.ErrnoException) => {
    // Only the first error counts: the 502 below must not be cut by a later one.
    if (ex.clientGone || failed) return;
    failed = true;
    req.unpipe(up);
    if (responded) {
      // Mid-response: the status line is gone, so the only honest signal is a cut stream.
      res.destroy();
      return;
    }
    // A keep-alive socket the sandbox closed while idle fails on first use; Node's documented
    // remedy is to retry, which is safe only when no body has been consumed. (A socket of an
    // earlier sandbox at the same address never gets here: pools are per incarnation.)
    if (up.reusedSocket && err.code === 'ECONNRESET' && !ex.hasBody && !isRetry) {
      send(ex, target, true);
      return;
    }
    // Whatever failed before a response (refused, reset, timed out), the address may be stale.
    ctx.release(to.sandboxId);
    ctx.logger.debug({ sandboxId: to.sandboxId, port: to.port, err }, 'sandbox port unreachable');
    sendJson(res, 502, unreachableBody(to.sandboxId, to.port));
  });

  up.on('response', (upRes) => {
    responded = true;
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, responseHeaders(upRes));
    // Long-lived streams (Connect server-streams) may not send a first message for a while; the
    // client should see the status and headers now, not with that message.
    res.flushHeaders();
    upRes.on('data', () => ctx.touch(to.sandboxId));
    pipeline(upRes, res, (err) => {
      if (err && !ex.clientGone) {
        ctx.logger.debug({ sandboxId: to.sandboxId, err }, 'sandbox response cut');
        res.destroy();
      }
    });
  });

  if (!ex.hasBody) {
    up.end();
    req.resume();
    return;
  }
  // Not `pipeline`: a client abort would then surface as an upstream error and be mistaken for
  // an unreachable sandbox; `res` 'close' destroys the upstream request instead.
  req.pipe(up);
  req.on('data', () => ctx.touch(to.sandboxId));
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

/**
 * Opens a connection to `port` of the target and leaves it in the target's pool, kept alive: a
 * `GET /health` (envd's, which needs no token) whose answer is read and dropped. Resolves once the
 * connection is back in the pool, or failed (never rejects).
 */
export function openConnection(
  target: Target,
  port: number,
  connectTimeoutMs: number,
  logger: Logger,
): Promise<void> {
  return new Promise((resolve) => {
    const up = http.request({
      host: target.host,
      port,
      method: 'GET',
      path: '/health',
      headers: { host: formatHostPort(target.host, port) },
      agent: target.agent,
    });
    up.setNoDelay(true);
    guardConnect(up, connectTimeoutMs);
    up.on('response', (res) => {
      // Node gives the socket back to the pool on the tick after the answer's end.
      res.once('end', () => setImmediate(resolve));
      res.resume();
    });
    up.on('error', (err) => {
      logger.debug({ host: target.host, port, err }, 'opening a sandbox connection failed');
      resolve();
    });
    up.end();
  });
}
