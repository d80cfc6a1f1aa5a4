import net from 'node:net';
import ipaddr from 'ipaddr.js';

/** A TCP port from its decimal text (1–65535), else undefined. */
export function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * `host:port`, `[v6]:port` or `v6-literal` → its parts. An IPv6 address needs its brackets when a
 * port follows (`[::1]:7070`); the host comes back without them. `port 0` is allowed when
 * `allowZero` (a listener that takes any free port). Throws an Error naming what is wrong.
 */
export function parseHostPort(
  text: string,
  opts: { allowZero?: boolean } = {},
): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  const plain = /^([^:[\]]+):(\d+)$/.exec(text);
  const [, host = '', portText = ''] = bracketed ?? plain ?? [];
  if (!host)
    throw new Error(
      `expected host:port (an IPv6 address in brackets: [::1]:7070), got ${JSON.stringify(text)}`,
    );
  if (bracketed && !net.isIPv6(host))
    throw new Error(`${JSON.stringify(host)} in brackets is not an IPv6 address`);
  const port = opts.allowZero && portText === '0' ? 0 : parsePort(portText);
  if (port === undefined) throw new Error(`port ${portText} is not from ${opts.allowZero ? 0 : 1} to 65535`);
  return { host, port };
}

/** The inverse of `parseHostPort`: an IPv6 address gets its brackets. */
export function formatHostPort(host: string, port: number): string {
  return `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
}

/**
 * A comma-separated list of CIDRs (`10.0.0.0/8, fd00::/8`) → each validated and written the
 * canonical way with its network address (`10.1.2.3/8` → `10.0.0.0/8`), as firewall rules take
 * them; with `family`, entries of the other family are refused. Throws an Error naming the first
 * entry that does not fit.
 */
export function parseCidrList(text: string, opts: { family?: 'ipv4' | 'ipv6' } = {}): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      if (!ipaddr.isValidCIDR(entry))
        throw new Error(`${JSON.stringify(entry)} is not a CIDR (like 10.0.0.0/8)`);
      const [address, prefix] = ipaddr.parseCIDR(entry);
      const family = address.kind();
      if (opts.family && family !== opts.family)
        throw new Error(
          `${JSON.stringify(entry)} is ${family === 'ipv4' ? 'IPv4' : 'IPv6'}; only ${opts.family === 'ipv4' ? 'IPv4' : 'IPv6'} is taken here`,
        );
      const network =
        family === 'ipv4'
          ? ipaddr.IPv4.networkAddressFromCIDR(entry).toString()
          : ipaddr.IPv6.networkAddressFromCIDR(entry).toRFC5952String();
      return `${network}/${prefix}`;
    });
}
