import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ForwardContext } from './forward.js';
import { upgradeRequestHead } from './headers.js';
import { closeGently, rawReply, timeoutError, unreachableBody } from './replies.js';
import type { SandboxAddress } from './routing.js';
import { openAgentTunnel } from './agent-tunnel.js';
import type { Target } from './target-cache.js';

/**
 * An upgrade (WebSocket, or any other protocol switch) to a port inside the sandbox: a TCP
 * connection of its own (never pooled), the request head written to it, then bytes both ways
 * until either side closes. The sandbox answers the upgrade itself.
 */
const STATUS_TEXT: Record<number, string> = { 403: 'Forbidden', 502: 'Bad Gateway' };

export function tunnelUpgrade(
  ctx: ForwardContext,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  to: SandboxAddress,
): void {
  void ctx
    .targetFor(
      to,
      (status, body) => rawReply(socket, status, STATUS_TEXT[status] ?? 'Service Unavailable', body),
      req.headers,
    )
    .then((target) => {
      if (!target) return;
      if (socket.destroyed) return;
      ctx.touch(to.sandboxId);
      open(target);
    });

  function open(target: Target): void {
    let connected = false;
    const onClientClose = () => pending.abort();
    const pending = new AbortController();
    socket.once('close', onClientClose);
    connectUpstream(target, to, ctx.connectTimeoutMs, pending.signal).then(
      (upstream) => {
        socket.off('close', onClientClose);
        if (socket.destroyed) {
          upstream.destroy();
          return;
        }
        connected = true;
        upstream.write(upgradeRequestHead(req, { host: target.host, port: to.port }));
        if (head.length > 0) upstream.write(head);
        socket.pipe(upstream);
        upstream.pipe(socket);
        socket.on('data', () => ctx.touch(to.sandboxId));
        upstream.on('data', () => ctx.touch(to.sandboxId));
        // Either side closing ends the other once its pending bytes are written (a WebSocket close
        // frame must still reach the peer); an error drops both at once.
        socket.once('close', () => closeGently(upstream));
        upstream.once('close', () => closeGently(socket));
        socket.on('error', () => upstream.destroy());
        upstream.on('error', () => {
          if (connected) socket.destroy();
        });
      },
      (err: NodeJS.ErrnoException) => {
        socket.off('close', onClientClose);
        if (socket.destroyed) return;
        ctx.release(to.sandboxId);
        ctx.logger.debug(
          { sandboxId: to.sandboxId, port: to.port, err },
          'sandbox port unreachable (upgrade)',
        );
        rawReply(socket, 502, 'Bad Gateway', unreachableBody(to.sandboxId, to.port));
      },
    );
  }
}

/**
 * A connection of its own to the sandbox's port: TCP to its address, or a CONNECT stream through
 * its agent when it is on a registered host. Rejects when it cannot be opened in `timeoutMs`.
 */
function connectUpstream(
  target: Target,
  { sandboxId, port }: SandboxAddress,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Duplex> {
  const { session } = target.agent;
  if (session) return openAgentTunnel(session, sandboxId, port, timeoutMs);
  return new Promise((resolve, reject) => {
    const upstream = net.connect({ host: target.host, port, noDelay: true });
    const timer = setTimeout(() => upstream.destroy(timeoutError()), timeoutMs);
    const abort = () => upstream.destroy();
    signal.addEventListener('abort', abort, { once: true });
    upstream.once('connect', () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
      resolve(upstream);
    });
    upstream.once('error', (err) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
      reject(err);
    });
  });
}
