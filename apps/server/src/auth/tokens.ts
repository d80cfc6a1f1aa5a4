import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { trafficToken } from '../services/network-policy.js';

/** The `iss` of Wrenn's session tokens (the sandbox proxy recognises them by it). */
export const SESSION_ISSUER = 'wrenn';
const SESSION_TTL = '24h';
export const API_KEY_PREFIX = 'wrn_';

/** User sessions: HS256 JWTs carrying the user id; checked for signature, issuer and expiry. */
export class SessionTokens {
  private readonly key: Uint8Array;

  constructor(private readonly secret: string) {
    this.key = new TextEncoder().encode(secret);
  }

  /** The token a private sandbox's traffic must carry (services/network-policy.ts). */
  trafficToken(sandboxId: string): string {
    return trafficToken(this.secret, sandboxId);
  }

  issue(userId: string): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(userId)
      .setIssuer(SESSION_ISSUER)
      .setIssuedAt()
      .setExpirationTime(SESSION_TTL)
      .sign(this.key);
  }

  /** The user id, or undefined for a token that is forged, expired or malformed. */
  async verify(token: string): Promise<string | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.key, { issuer: SESSION_ISSUER, algorithms: ['HS256'] });
      return typeof payload.sub === 'string' ? payload.sub : undefined;
    } catch {
      return undefined;
    }
  }
}

/** A new API key: shown to its creator once; only its SHA-256 is stored. */
export function newApiKey(): { key: string; prefix: string; hash: string } {
  const key = API_KEY_PREFIX + randomBytes(24).toString('base64url');
  return { key, prefix: key.slice(0, API_KEY_PREFIX.length + 6), hash: hashApiKey(key) };
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}
