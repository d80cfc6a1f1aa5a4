import type { IncomingMessage } from 'node:http';
import { formatHostPort } from '@wrenn/core';
import { API_KEY_PREFIX, SESSION_ISSUER } from '../auth/tokens.js';

// RFC 9110 §7.6.1 plus the legacy ones; `proxy-*` is matched by prefix. They describe one
// connection, so they never cross the proxy (the upgrade path keeps connection/upgrade itself).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
// Node answers `Expect: 100-continue` itself before the handler runs, so the client is already
// sending; forwarding it would only let the sandbox refuse (417) a body that is on its way.
// The traffic token of a private sandbox is the proxy's to check, not the sandbox's to see.
const NOT_FORWARDED = new Set(['host', 'expect', 'e2b-traffic-access-token']);

export type HeaderMap = Record<string, string | string[]>;

/**
 * Request headers for the sandbox: hop-by-hop ones dropped (kept for upgrades), the control plane's
 * credentials dropped, Host and X-Forwarded-* set. Forwarded headers that arrive here came from a
 * trusted proxy (`admitRequest` removed any other client's), so they are extended, not replaced.
 */
export function forwardHeaders(
  req: IncomingMessage,
  target: { host: string; port: number },
  upgrade: boolean,
): HeaderMap {
  const dropped = connectionTokens(req.headers.connection);
  const headers = collect(req.rawHeaders, (name, value) => {
    if (NOT_FORWARDED.has(name) || name.startsWith('proxy-')) return false;
    if (name === 'x-api-key' || (name === 'authorization' && isControlPlaneCredential(value))) return false;
    if (upgrade)
      return name === 'connection' || name === 'upgrade' || !(HOP_BY_HOP.has(name) || dropped.has(name));
    return !(HOP_BY_HOP.has(name) || dropped.has(name));
  });
  headers.host = formatHostPort(target.host, target.port);
  const client = req.socket.remoteAddress;
  const prior = headers['x-forwarded-for'];
  const priorText = Array.isArray(prior) ? prior.join(', ') : prior;
  if (client) headers['x-forwarded-for'] = priorText ? `${priorText}, ${client}` : client;
  // A TLS terminator in front of us knows the real scheme and host better than this hop does.
  headers['x-forwarded-proto'] ??= 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
  if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host;
  return headers;
}

/** Response headers for the client: hop-by-hop ones dropped. */
export function responseHeaders(upRes: IncomingMessage): HeaderMap {
  const dropped = connectionTokens(upRes.headers.connection);
  return collect(
    upRes.rawHeaders,
    (name) => !(HOP_BY_HOP.has(name) || dropped.has(name) || name.startsWith('proxy-')),
  );
}

/** The request line and headers of an upgrade, as they are written to the sandbox's socket. */
export function upgradeRequestHead(req: IncomingMessage, target: { host: string; port: number }): string {
  const headers = forwardHeaders(req, target, true);
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    // Values come from Node's parser (or from us), so they hold no CR/LF.
    for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`;
  }
  return `${text}\r\n`;
}

/**
 * The control plane's credentials never reach a sandbox, whose code is the user's (or anyone's it
 * runs): `X-API-Key` is dropped whatever it holds, and `Authorization` when it carries a Wrenn key
 * or a Wrenn session token (a JWT issued by `wrenn`). Every other `Authorization` is the sandbox's
 * own and is kept: envd's `Basic <user>:` (which user an RPC runs as) and an app's own tokens, as is
 * `X-Access-Token` (envd's token, docs/e2b-wire.md). The control plane sets no cookies, so every
 * cookie a client sends here belongs to the sandbox's apps.
 */
export function isControlPlaneCredential(authorization: string): boolean {
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) return false;
  const token = match[1]!;
  if (token.startsWith(API_KEY_PREFIX)) return true;
  const [, payload] = token.split('.');
  if (!payload) return false;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iss?: unknown };
    return claims.iss === SESSION_ISSUER;
  } catch {
    return false;
  }
}

/** Lower-cased headers from `rawHeaders`, repeated ones kept as arrays (Node would join them). */
function collect(raw: string[], keep: (name: string, value: string) => boolean): HeaderMap {
  const out: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    const value = raw[i + 1] ?? '';
    if (!keep(name, value)) continue;
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
