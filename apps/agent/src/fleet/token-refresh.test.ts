import { silentLogger } from '@wrenn/core';
import { createCertificateAuthority, generateKeyPair, issueCertificate, type TlsMaterial } from '@wrenn/pki';
import { describe, expect, it, vi } from 'vitest';
import { ControlPlaneRefusal } from './control-plane-client.js';
import type { HostCredentials, Tokens } from './credentials-store.js';
import { HostSession, jwtValidity } from './token-refresh.js';

const HOUR = 3600_000;

function jwt(claims: { iat?: number; exp?: number }): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'ES256' })}.${part(claims)}.sig`;
}

function session(credentials: HostCredentials, refresh = vi.fn()) {
  const saved: { tokens: Tokens[]; certs: string[] } = { tokens: [], certs: [] };
  const renewed: TlsMaterial[] = [];
  const s = new HostSession(
    credentials,
    {
      saveTokens: (t) => Promise.resolve(void saved.tokens.push(t)),
      saveCertificate: (c) => Promise.resolve(void saved.certs.push(c)),
    },
    { refresh },
    (m) => renewed.push(m),
    silentLogger(),
  );
  return { s, saved, renewed, refresh };
}

async function credentialsWith(accessToken: string, certDays = 30): Promise<HostCredentials> {
  const ca = await createCertificateAuthority();
  const keys = await generateKeyPair();
  const certPem = await issueCertificate(ca, {
    publicKeyPem: keys.publicKeyPem,
    identity: { kind: 'host', hostId: 'h1' },
    days: certDays,
  });
  return {
    hostId: 'h1',
    controlPlaneUrl: 'http://cp',
    keyPem: keys.privateKeyPem,
    certPem,
    caPem: ca.certPem,
    accessToken,
    refreshToken: 'r1',
  };
}

describe('host credential refresh', () => {
  it('reads a JWT’s lifetime without verifying it', () => {
    expect(jwtValidity(jwt({ iat: 100, exp: 200 }))).toEqual({ from: 100_000, to: 200_000 });
    expect(jwtValidity('not-a-jwt')).toBeUndefined();
    expect(jwtValidity(jwt({}))).toBeUndefined();
  });

  it('is due once a quarter of the JWT’s life is left, not before', async () => {
    const now = Date.now();
    const iat = Math.floor(now / 1000) - 5 * 24 * 3600;
    const fresh = session(await credentialsWith(jwt({ iat, exp: iat + 7 * 24 * 3600 })));
    // 2 of 7 days left: more than a quarter.
    expect(fresh.s.refreshDue(now)).toBe(false);
    // 1 of 7 days left.
    expect(fresh.s.refreshDue(now + 24 * HOUR)).toBe(true);
  });

  it('is due when the certificate nears its end, whatever the JWT says', async () => {
    const now = Date.now();
    const creds = await credentialsWith(jwt({ iat: now / 1000, exp: now / 1000 + 365 * 24 * 3600 }), 30);
    expect(session(creds).s.refreshDue(now)).toBe(false);
    expect(session(creds).s.refreshDue(now + 25 * 24 * HOUR)).toBe(true);
  });

  it('stores the new tokens, then the certificate, and puts the certificate in place', async () => {
    const creds = await credentialsWith('old');
    const refresh = vi
      .fn()
      .mockResolvedValue({ access_token: 'a2', refresh_token: 'r2', certificate: 'NEWCERT' });
    const { s, saved, renewed } = session(creds, refresh);
    await Promise.all([s.refresh(), s.refresh()]);
    expect(refresh).toHaveBeenCalledTimes(1);
    expect(refresh).toHaveBeenCalledWith('r1');
    expect(saved).toEqual({ tokens: [{ accessToken: 'a2', refreshToken: 'r2' }], certs: ['NEWCERT'] });
    expect(s.accessToken).toBe('a2');
    expect(renewed).toEqual([{ keyPem: creds.keyPem, certPem: 'NEWCERT', caPem: creds.caPem }]);
    // The next refresh presents the rotated token.
    await s.refresh();
    expect(refresh).toHaveBeenLastCalledWith('r2');
  });

  it('keeps the old credentials when the refresh is refused', async () => {
    const creds = await credentialsWith('old');
    const refresh = vi.fn().mockRejectedValue(new ControlPlaneRefusal(401, 'revoked'));
    const { s, saved, renewed } = session(creds, refresh);
    await expect(s.refresh()).rejects.toBeInstanceOf(ControlPlaneRefusal);
    expect([s.accessToken, saved.tokens.length, renewed.length]).toEqual(['old', 0, 0]);
  });
});
