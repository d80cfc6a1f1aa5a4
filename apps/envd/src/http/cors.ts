import type { IncomingMessage, ServerResponse } from 'node:http';

// E2B's envd allows every origin: browsers talk to it directly with the access token, which is the
// real guard. Connect's response headers must be readable by browser clients.
const exposedHeaders = [
  'Content-Disposition',
  'Content-Length',
  'Content-Encoding',
  'Connect-Content-Encoding',
  'Connect-Accept-Encoding',
  'Grpc-Status',
  'Grpc-Message',
  'X-Envd-Version',
].join(', ');

/** Adds CORS headers; answers a preflight and returns true when the request was one. */
export function handleCors(req: IncomingMessage, res: ServerResponse): boolean {
  res.setHeader('Access-Control-Allow-Origin', req.headers.origin ?? '*');
  res.setHeader('Vary', 'Origin');
  res.setHeader('Access-Control-Expose-Headers', exposedHeaders);
  if (req.method !== 'OPTIONS' || !req.headers['access-control-request-method']) return false;
  res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS');
  res.setHeader('Access-Control-Allow-Headers', req.headers['access-control-request-headers'] ?? '*');
  res.setHeader('Access-Control-Max-Age', '7200');
  res.writeHead(204);
  res.end();
  return true;
}
