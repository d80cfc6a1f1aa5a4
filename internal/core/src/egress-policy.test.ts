import { describe, expect, it } from 'vitest';
import { domainMatches, egressCidr, egressDomain, egressIsOpen, egressPolicyFrom } from './egress-policy.js';

const field = (list: 'allow' | 'deny', i: number) => `${list}_out[${i}]`;

describe('egress policy entries', () => {
  it('reads addresses and CIDRs the canonical way', () => {
    expect(egressCidr('8.8.8.8')).toBe('8.8.8.8/32');
    expect(egressCidr('10.1.2.3/8')).toBe('10.0.0.0/8');
    expect(egressCidr('0.0.0.0/0')).toBe('0.0.0.0/0');
    expect(egressCidr('example.com')).toBeUndefined();
    expect(() => egressCidr('10.0.0.0/33')).toThrow(/prefix length over 32/);
    expect(() => egressCidr('fd00::/8')).toThrow(/IPv6/);
    expect(egressCidr('300.1.1.1')).toBeUndefined();
  });

  it('reads names and leading wildcards; matches subdomains, not the apex, for a wildcard', () => {
    expect(egressDomain('API.Example.com.')).toBe('api.example.com');
    expect(egressDomain('*.example.com')).toBe('*.example.com');
    for (const bad of ['*', 'localhost', 'a..b', '-a.com', 'a.*.com', '1.2.3', 'a b.com', '*.com']) {
      expect(egressDomain(bad), bad).toBeUndefined();
    }
    expect(domainMatches('*.example.com', 'a.b.example.com')).toBe(true);
    expect(domainMatches('*.example.com', 'example.com')).toBe(false);
    expect(domainMatches('*.example.com', 'badexample.com')).toBe(false);
    expect(domainMatches('example.com', 'EXAMPLE.com.')).toBe(true);
  });

  it('builds a policy and names a bad entry by its place', () => {
    expect(egressPolicyFrom({ allowOut: ['1.1.1.1', 'example.com'], denyOut: ['0.0.0.0/0'] }, field)).toEqual(
      { allowCidrs: ['1.1.1.1/32'], allowDomains: ['example.com'], denyCidrs: ['0.0.0.0/0'] },
    );
    expect(egressPolicyFrom({ internet: false }, field).denyCidrs).toEqual(['0.0.0.0/0']);
    expect(() => egressPolicyFrom({ allowOut: ['1.1.1.1', 'x', 'nope nope'] }, field)).toThrow(
      /^allow_out\[1\]: "x" is not an IPv4 address, a CIDR or a domain name/,
    );
    expect(() => egressPolicyFrom({ denyOut: ['example.com'] }, field)).toThrow(
      /^deny_out\[0\]: .*domain names cannot be denied/,
    );
    expect(egressIsOpen(egressPolicyFrom({ allowOut: ['example.com'] }, field))).toBe(true);
    expect(egressIsOpen(egressPolicyFrom({ denyOut: ['1.2.3.0/24'] }, field))).toBe(false);
  });
});
