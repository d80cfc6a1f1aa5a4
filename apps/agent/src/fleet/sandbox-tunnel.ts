import http2, { type Http2ServerRequest } from 'node:http2';
import net from 'node:net';
import { errorMessage, isSandboxId, type Logger } from '@wrenn/core';

/** Where a tunnel to a running sandbox goes, and its bookkeeping (activity while open). */
export interface TunnelTarget {
  /** The sandbox's slot address on this host. */
  host: string;
  /** Aborted when the sandbox stops running (pause, destroy, death): the tunnel closes with it. */
  stopped: AbortSignal;
  /** The tunnel is closed: it no longer counts as activity. */
  done: () => void;
}

export interface TunnelTargets {
  /** Throws when the sandbox is unknown or not running. */
  tunnelTarget(sandboxId: string): TunnelTarget;
}

const { NGHTTP2_CONNECT_ERROR, NGHTTP2_CANCEL } = http2.constants;
const AUTHORITY = /^([^:]+):(\d{1,5})$/;

/**
 * The control plane's proxy reaches a port inside a sandbox through this agent (docs/fleet.md): an
 * HTTP/2 CONNECT with `:authority` `<sandbox id>:<port>`. The answer is 200 once the port accepted
 * the connection, and the stream then carries the bytes both ways; 400 for an authority that is not
 * `<sandbox id>:<port>`, 404 for a sandbox that is not here or not running, 502 when nothing
 * listens on the port. Only this agent knows slot addresses; the proxy never needs them.
 */
export function handleTunnel(req: Http2ServerRequest, targets: TunnelTargets, logger: Logger): void {
  const { stream } = req;
  const refuse = (status: number) => {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
  };
  const [, sandboxId = '', portText = ''] = AUTHORITY.exec(req.headers[':authority'] ?? '') ?? [];
  const port = Number(portText);
  if (!isSandboxId(sandboxId) || !Number.isInteger(port) || port < 1 || port > 65535) return refuse(400);
  let target: TunnelTarget;
  try {
    target = targets.tunnelTarget(sandboxId);
  } catch {
    return refuse(404);
  }
  const socket = net.connect({ host: target.host, port });
  let connected = false;
  const close = () => {
    socket.destroy();
    if (!stream.destroyed) stream.close(connected ? NGHTTP2_CONNECT_ERROR : NGHTTP2_CANCEL);
  };
  target.stopped.addEventListener('abort', close, { once: true });
  socket.once('connect', () => {
    connected = true;
    stream.respond({ ':status': 200 });
    socket.pipe(stream);
    stream.pipe(socket);
  });
  socket.on('error', (err) => {
    if (!connected) {
      logger.debug({ sandboxId, port, err: errorMessage(err) }, 'tunnel: the sandbox port refused');
      refuse(502);
    }
    close();
  });
  socket.on('close', () => {
    if (!stream.destroyed && connected) stream.end();
  });
  stream.on('error', () => socket.destroy());
  stream.once('close', () => {
    socket.destroy();
    target.stopped.removeEventListener('abort', close);
    target.done();
  });
}
