import type { ServerResponse } from 'node:http';
import { codeToString } from '@connectrpc/connect/protocol-connect';
import { httpStatusFromCode, type ConnectError } from '@wrenn/core';

/** envd's REST error body: `{"code": <http status>, "message": …}` (E2B's envd.yaml Error). */
export function sendEnvdError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { code: status, message });
}

/** A Connect error body for an RPC path the Connect router never saw (auth, unknown method). */
export function sendConnectError(res: ServerResponse, err: ConnectError): void {
  sendJson(res, httpStatusFromCode(err.code), { code: codeToString(err.code), message: err.rawMessage });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export function sendNoContent(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(204, { 'cache-control': 'no-store', ...headers });
  res.end();
}
