import { describe, expect, it } from 'vitest';
import { formatHostPort, parseCidrList, parseHostPort, parsePort } from './net-address.js';

describe('host:port', () => {
  it('parses IPv4, names and bracketed IPv6', () => {
    expect(parseHostPort('127.0.0.1:7070')).toEqual({ host: '127.0.0.1', port: 7070 });
    expect(parseHostPort('localhost:8080')).toEqual({ host: 'localhost', port: 8080 });
    expect(parseHostPort('[::1]:7070')).toEqual({ host: '::1', port: 7070 });
    expect(parseHostPort('[fd00::12:2]:49983')).toEqual({ host: 'fd00::12:2', port: 49983 });
    expect(parseHostPort('127.0.0.1:0', { allowZero: true })).toEqual({ host: '127.0.0.1', port: 0 });
  });

  it('refuses what is not one, saying why', () => {
    for (const bad of [
      '::1:7070',
      '[::1]',
      '127.0.0.1',
      ':7070',
      '127.0.0.1:',
      'host:http',
      '[nope]:1',
      'h:65536',
      'a:b:1',
    ])
      expect(() => parseHostPort(bad), bad).toThrow(/host:port|not an IPv6|not from/);
    expect(() => parseHostPort('127.0.0.1:0')).toThrow(/port 0 is not from 1/);
  });

  it('writes IPv6 back in brackets', () => {
    expect(formatHostPort('::1', 7070)).toBe('[::1]:7070');
    expect(formatHostPort('10.12.0.2', 49983)).toBe('10.12.0.2:49983');
    expect(parseHostPort(formatHostPort('fe80::1', 80))).toEqual({ host: 'fe80::1', port: 80 });
  });

  it('parses ports', () => {
    expect(parsePort('1')).toBe(1);
    expect(parsePort('65535')).toBe(65535);
    for (const bad of ['0', '65536', '-1', '1.5', '', '0x10', ' 80'])
      expect(parsePort(bad), bad).toBeUndefined();
  });
});

describe('CIDR lists', () => {
  it('validates each entry and writes it with its network address', () => {
    expect(parseCidrList('10.0.0.0/8, 172.16.0.0/12 ,192.168.1.7/16,,')).toEqual([
      '10.0.0.0/8',
      '172.16.0.0/12',
      '192.168.0.0/16',
    ]);
    expect(parseCidrList('fd00::1/8')).toEqual(['fd00::/8']);
    expect(parseCidrList('')).toEqual([]);
  });

  it('names the first entry that is not a CIDR', () => {
    expect(() => parseCidrList('10.0.0.0/8,10.0.0.0')).toThrow(/"10.0.0.0" is not a CIDR/);
    expect(() => parseCidrList('10.0.0.0/33')).toThrow(/"10.0.0.0\/33"/);
    expect(() => parseCidrList('300.0.0.0/8')).toThrow(/"300.0.0.0\/8"/);
    expect(() => parseCidrList('10.0.0.0/8; rm -rf /')).toThrow(/is not a CIDR/);
  });

  it('keeps to one family when asked', () => {
    expect(() => parseCidrList('10.0.0.0/8,fd00::/8', { family: 'ipv4' })).toThrow(/"fd00::\/8" is IPv6/);
  });
});
