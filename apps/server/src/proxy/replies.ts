import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** E2B's answer for a sandbox that is not running (its SDK reads a 502 as "not found"). */
export function notFoundBody(sandboxId: string): object {
  return { sandboxId, message: 'The sandbox was not found', code: 502 };
}

export function unreachableBody(sandboxId: string, port: number): object {
  return { sandboxId, message: `The sandbox is not reachable on port ${port}`, code: 502 };
}

export function sendJson(res: ServerResponse, status: number, body: object): void {
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

/** A whole HTTP response written on a socket that was handed over for an upgrade, then closed. */
export function rawReply(socket: Duplex, status: number, reason: string, body: object): void {
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
export function closeGently(socket: Duplex): void {
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

export function timeoutError(): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error('connect timed out');
  err.code = 'ETIMEDOUT';
  return err;
}
