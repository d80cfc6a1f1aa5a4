import { describe, expect, it } from 'vitest';
import { loadServerConfig } from './config.js';

describe('the server settings', () => {
  it('listen on host:port, an IPv6 address in brackets', () => {
    expect(loadServerConfig({})).toMatchObject({ listenHost: '127.0.0.1', listenPort: 8080 });
    expect(loadServerConfig({ WRENN_SERVER_LISTEN: '[::1]:9090' })).toMatchObject({
      listenHost: '::1',
      listenPort: 9090,
    });
    expect(loadServerConfig({ WRENN_SERVER_LISTEN: '0.0.0.0:0' })).toMatchObject({ listenPort: 0 });
    for (const bad of ['::1:9090', 'localhost', 'localhost:http', '[::1]'])
      expect(() => loadServerConfig({ WRENN_SERVER_LISTEN: bad }), bad).toThrow(/WRENN_SERVER_LISTEN/);
  });

  it('close signup, trust no proxy and keep the audit log 90 days unless told otherwise', () => {
    expect(loadServerConfig({})).toMatchObject({
      openSignup: false,
      trustedProxies: [],
      auditRetentionDays: 90,
    });
    expect(
      loadServerConfig({
        WRENN_OPEN_SIGNUP: 'true',
        WRENN_TRUSTED_PROXIES: ' 10.0.0.0/8, ::1 ,',
        WRENN_AUDIT_RETENTION_DAYS: '7',
      }),
    ).toMatchObject({ openSignup: true, trustedProxies: ['10.0.0.0/8', '::1'], auditRetentionDays: 7 });
    expect(() => loadServerConfig({ WRENN_OPEN_SIGNUP: 'maybe' })).toThrow(/WRENN_OPEN_SIGNUP/);
    expect(() => loadServerConfig({ WRENN_AUDIT_RETENTION_DAYS: '0' })).toThrow(/WRENN_AUDIT_RETENTION_DAYS/);
  });
});
