import ipaddr from 'ipaddr.js';

/**
 * A sandbox's egress policy as the agent enforces it (docs/network.md). A new connection to an
 * address in `allowCidrs`, or to one the agent's resolver answered for a name of `allowDomains`, is
 * let through; else one in `denyCidrs` is refused; else it is let through. The platform's own deny
 * list applies before any of this and cannot be allowed here.
 */
export interface EgressPolicy {
  allowCidrs: string[];
  allowDomains: string[];
  denyCidrs: string[];
}

export const ALL_IPV4 = '0.0.0.0/0';
/** Entries per list: each is a firewall rule in the sandbox's slot. */
export const MAX_EGRESS_ENTRIES = 256;

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * An IPv4 address or CIDR → its canonical CIDR (`8.8.8.8` → `8.8.8.8/32`, `10.1.2.3/8` →
 * `10.0.0.0/8`); undefined when the entry is neither. IPv6 is refused with a reason (sandboxes have
 * no IPv6 egress).
 */
export function egressCidr(entry: string): string | undefined {
  const text = entry.trim();
  if (ipaddr.IPv6.isValid(text) || (text.includes(':') && ipaddr.isValidCIDR(text)))
    throw new Error(`${JSON.stringify(entry)} is IPv6; sandboxes have IPv4 egress only`);
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return `${text}/32`;
  const [address, prefix] = text.split('/');
  if (prefix === undefined || !ipaddr.IPv4.isValidFourPartDecimal(address ?? '') || !/^\d{1,2}$/.test(prefix))
    return undefined;
  if (Number(prefix) > 32) throw new Error(`${JSON.stringify(entry)}: prefix length over 32`);
  return `${ipaddr.IPv4.networkAddressFromCIDR(text).toString()}/${Number(prefix)}`;
}

/**
 * A domain name or a leading wildcard (`*.example.com`: its subdomains at any depth, not itself),
 * lower-cased, without a trailing dot; undefined when the entry is not one.
 */
export function egressDomain(entry: string): string | undefined {
  let name = entry.trim().toLowerCase().replace(/\.$/, '');
  const wildcard = name.startsWith('*.');
  if (wildcard) name = name.slice(2);
  const labels = name.split('.');
  if (name.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l))) return undefined;
  // A name of digits only in its last label would be an address written wrongly, not a name.
  if (/^\d+$/.test(labels.at(-1)!)) return undefined;
  return wildcard ? `*.${name}` : name;
}

/** Whether `name` (as asked in DNS) is one `pattern` (an `egressDomain`) allows. */
export function domainMatches(pattern: string, name: string): boolean {
  const asked = name.toLowerCase().replace(/\.$/, '');
  if (pattern.startsWith('*.')) return asked.endsWith(pattern.slice(1));
  return asked === pattern;
}

/**
 * E2B's and Wrenn's lists (`allowOut` may mix CIDRs, addresses and names; `denyOut` takes CIDRs and
 * addresses) → a policy; `internet: false` denies everything not allowed. Throws an Error whose
 * message starts with the entry's place (`allow_out[2]: …`), named by `field`.
 */
export function egressPolicyFrom(
  input: { allowOut?: readonly string[]; denyOut?: readonly string[]; internet?: boolean },
  field: (list: 'allow' | 'deny', index: number) => string,
): EgressPolicy {
  const policy: EgressPolicy = { allowCidrs: [], allowDomains: [], denyCidrs: [] };
  const check = (list: 'allow' | 'deny', entries: readonly string[]) => {
    if (entries.length > MAX_EGRESS_ENTRIES)
      throw new Error(`${field(list, MAX_EGRESS_ENTRIES)}: at most ${MAX_EGRESS_ENTRIES} entries`);
    entries.forEach((entry, i) => {
      let cidr: string | undefined;
      try {
        cidr = egressCidr(entry);
      } catch (err) {
        throw new Error(`${field(list, i)}: ${(err as Error).message}`);
      }
      if (cidr) {
        (list === 'allow' ? policy.allowCidrs : policy.denyCidrs).push(cidr);
        return;
      }
      const domain = list === 'allow' ? egressDomain(entry) : undefined;
      if (domain) {
        policy.allowDomains.push(domain);
        return;
      }
      throw new Error(
        `${field(list, i)}: ${JSON.stringify(entry)} is not ${
          list === 'allow'
            ? 'an IPv4 address, a CIDR or a domain name (example.com, *.example.com)'
            : 'an IPv4 address or CIDR (domain names cannot be denied)'
        }`,
      );
    });
  };
  check('allow', input.allowOut ?? []);
  check('deny', input.denyOut ?? []);
  if (input.internet === false && !policy.denyCidrs.includes(ALL_IPV4)) policy.denyCidrs.push(ALL_IPV4);
  const unique = (list: string[]) => [...new Set(list)];
  return {
    allowCidrs: unique(policy.allowCidrs),
    allowDomains: unique(policy.allowDomains),
    denyCidrs: unique(policy.denyCidrs),
  };
}

/** A policy that changes nothing: no deny, so every allow is moot. */
export function egressIsOpen(policy: EgressPolicy | undefined): boolean {
  return !policy || policy.denyCidrs.length === 0;
}
