import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { routeSandboxRequest } from './routing.js';

// Node hands the proxy lower-cased header names, so these fakes use them too; the integration test
// sends mixed-case names over a real socket.
describe('routeSandboxRequest', () => {
  it('routes by the E2b-Sandbox-Id / E2b-Sandbox-Port headers, whatever the host', () => {
    const cases: IncomingHttpHeaders[] = [
      { host: 'localhost:3002', 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '49983' },
      { host: 'sandbox.wrenn.test', 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '49983' },
      { 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '49983' },
      // The headers win over a host that would route elsewhere.
      { host: '8080-other.wrenn.test', 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '49983' },
    ];
    for (const headers of cases) {
      expect(routeSandboxRequest(headers), JSON.stringify(headers)).toEqual({
        sandboxId: 'abc123abc',
        port: 49983,
      });
    }
  });

  it('answers a half or malformed header pair with an error, not as API traffic', () => {
    const cases: [IncomingHttpHeaders, RegExp][] = [
      [{ 'e2b-sandbox-id': 'abc123abc' }, /without E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-port': '49983' }, /without E2b-Sandbox-Id/],
      [{ 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '0' }, /E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '65536' }, /E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '80a' }, /E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '-1' }, /E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '1.5' }, /E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-id': 'abc123abc', 'e2b-sandbox-port': '' }, /E2b-Sandbox-Port/],
      [{ 'e2b-sandbox-id': 'ABC123ABC', 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id/],
      [{ 'e2b-sandbox-id': 'abc-123', 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id/],
      [{ 'e2b-sandbox-id': '', 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id/],
      [{ 'e2b-sandbox-id': 'a'.repeat(33), 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id: must be 8-32/],
      [{ 'e2b-sandbox-id': 'abc1234', 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id: must be 8-32/],
      // What Node makes of a repeated header.
      [{ 'e2b-sandbox-id': 'abc, def', 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id/],
      [{ 'e2b-sandbox-id': ['abc', 'def'], 'e2b-sandbox-port': '49983' }, /E2b-Sandbox-Id/],
      [{ host: '0-abc123abc.wrenn.test' }, /host: port 0/],
      [{ host: '99999-abc123abc.wrenn.test' }, /host: port 99999/],
      [{ host: `80-${'a'.repeat(33)}.wrenn.test` }, /host: the sandbox id must be 8-32/],
      [{ host: '80-abc.wrenn.test' }, /host: the sandbox id must be 8-32/],
    ];
    for (const [headers, message] of cases) {
      const route = routeSandboxRequest(headers);
      expect(route && 'error' in route ? route.error : route, JSON.stringify(headers)).toMatch(message);
    }
  });

  it('routes by the left-most label of Host, its port stripped', () => {
    const cases: [string, string, number][] = [
      ['8080-abc123abc.wrenn.test:9999', 'abc123abc', 8080],
      ['8080-abc123abc.wrenn.test', 'abc123abc', 8080],
      ['49983-i0a1b2c3d4e5f6g7h8j9.sandboxes.example.com', 'i0a1b2c3d4e5f6g7h8j9', 49983],
      ['49983-abc123abc:3002', 'abc123abc', 49983],
      ['1-abcdefgh', 'abcdefgh', 1],
      [`65535-${'a'.repeat(32)}`, 'a'.repeat(32), 65535],
      // Host names are case-insensitive.
      ['49983-ABC123ABC.Wrenn.Test', 'abc123abc', 49983],
    ];
    for (const [host, sandboxId, port] of cases) {
      expect(routeSandboxRequest({ host }), host).toEqual({ sandboxId, port });
    }
  });

  it('leaves everything else to the API', () => {
    const hosts = [
      undefined,
      '',
      'localhost',
      'localhost:3000',
      '127.0.0.1:3000',
      '[::1]:3000',
      'api.wrenn.test',
      'sandbox.wrenn.test',
      'wrenn.test',
      'abc123abc-8080.wrenn.test',
      '8080-abc_123.wrenn.test',
      '8080-.wrenn.test',
      '-abc.wrenn.test',
      '8080-abc-def.wrenn.test',
      'x8080-abc.wrenn.test',
      'api.8080-abc123abc.wrenn.test',
    ];
    for (const host of hosts) {
      expect(routeSandboxRequest(host === undefined ? {} : { host }), String(host)).toBeUndefined();
    }
    // Other E2B headers alone are not routing.
    expect(routeSandboxRequest({ host: 'localhost', 'x-access-token': 't' })).toBeUndefined();
  });
});
