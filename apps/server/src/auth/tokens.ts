import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { trafficToken } from '../services/network-policy.js';

/** The `iss` of Wrenn's session tokens (the sandbox proxy recognises them by it). */
export const SESSION_ISSUER = 'wrenn';
const SESSION_TTL = '24h';
export const API_KEY_PREFIX = 'wrn_';

/** How many verified sessions `SessionTokens` remembers (the oldest is forgotten first). */
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * User sessions: HS256 JWTs carrying the user id; checked for signature, issuer and expiry.
 *
 * A token verified once is remembered until it expires: jose verifies through WebCrypto, whose HMAC
 * runs on libuv's thread pool, and under load its answer waits behind every other connection's I/O
 * for a turn of the event loop — 1 s of server time per session request with 200 clients, against
 * 4 ms remembered (docs/performance.md, the load run). Remembering changes nothing a token means:
 * it is good until its expiry either way (`requireUser` still checks that its user exists).
 */
export class SessionTokens {
  private readonly key: Uint8Array;
  private readonly verified = new Map<string, { userId: string; expiresAtMs: number }>();

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
    const known = this.verified.get(token);
    if (known && known.expiresAtMs > Date.now()) return known.userId;
    if (known) this.verified.delete(token);
    try {
      const { payload } = await jwtVerify(token, this.key, { issuer: SESSION_ISSUER, algorithms: ['HS256'] });
      if (typeof payload.sub !== 'string') return undefined;
      if (payload.exp !== undefined) this.remember(token, payload.sub, payload.exp * 1000);
      return payload.sub;
    } catch {
      return undefined;
    }
  }

  private remember(token: string, userId: string, expiresAtMs: number): void {
    if (this.verified.size >= VERIFIED_CACHE_SIZE) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    this.verified.set(token, { userId, expiresAtMs });
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
