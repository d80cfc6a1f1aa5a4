import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);

/**
 * The proxies whose `X-Forwarded-*` are believed (WRENN_TRUSTED_PROXIES, CIDRs or addresses). Empty
 * (the default): none, not even loopback; what a client says it forwarded is dropped.
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly isEmpty: boolean;

  constructor(cidrs: readonly string[] = []) {
    for (const entry of cidrs) {
      const [address = '', bits] = entry.split('/');
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (!isIP(address))
        throw new Error(`trusted proxies: ${JSON.stringify(entry)} is not an address or CIDR`);
      const prefix = bits === undefined ? (family === 'ipv6' ? 128 : 32) : Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 'ipv6' ? 128 : 32))
        throw new Error(`trusted proxies: ${JSON.stringify(entry)} has a bad prefix length`);
      this.list.addSubnet(address, prefix, family);
    }
    this.isEmpty = cidrs.length === 0;
  }

  has(address: string | undefined): boolean {
    if (!address || this.isEmpty) return false;
    const plain = unmapped(address);
    const family = isIP(plain);
    if (!family) return false;
    return this.list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is 10.0.0.1. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** What the server knows of one request before any route: who sent it and its id. */
export interface RequestOrigin {
  /** The client's address: the peer, or, behind a trusted proxy, the first untrusted hop it names. */
  ip?: string;
  /** The client's `X-Request-Id` when it is sane, else a new one; answered in `X-Request-Id`. */
  requestId: string;
}

const origins = new WeakMap<IncomingMessage, RequestOrigin>();

/**
 * Called on every request (and upgrade) before anything reads it: from a peer that is not a trusted
 * proxy, `X-Forwarded-For/Proto/Host` and `Forwarded` are removed (from `headers` and `rawHeaders`,
 * which is what Hono and the sandbox proxy read), so nothing downstream can believe them; the
 * client's address and the request id are worked out once.
 */
export function admitRequest(req: IncomingMessage, trusted: TrustedProxies): RequestOrigin {
  const peer = req.socket.remoteAddress ? unmapped(req.socket.remoteAddress) : undefined;
  let ip = peer;
  if (trusted.has(peer)) {
    // Right to left: the nearest hop that is not one of our proxies is the client.
    const hops = forwardedFor(req);
    for (let i = hops.length - 1; i >= 0; i--) {
      ip = hops[i];
      if (!trusted.has(ip)) break;
    }
  } else {
    stripForwarded(req);
  }
  const given = req.headers['x-request-id'];
  const requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
  const origin = { ip, requestId };
  origins.set(req, origin);
  return origin;
}

/** What `admitRequest` found for `req` (undefined for a request that did not come through it). */
export function requestOrigin(req: IncomingMessage | undefined): RequestOrigin | undefined {
  return req ? origins.get(req) : undefined;
}

function forwardedFor(req: IncomingMessage): string[] {
  const hops: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() !== 'x-forwarded-for') continue;
    for (const part of req.rawHeaders[i + 1]!.split(',')) {
      const hop = unmapped(part.trim());
      if (isIP(hop)) hops.push(hop);
    }
  }
  return hops;
}

function stripForwarded(req: IncomingMessage): void {
  for (const name of FORWARDED) delete req.headers[name];
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if (FORWARDED.has(raw[i]!.toLowerCase())) raw.splice(i, 2);
  }
}
