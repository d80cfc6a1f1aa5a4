import { createHash, createPublicKey, randomBytes, randomUUID } from 'node:crypto';
import { writeSync } from 'node:fs';
import { importPKCS8, importSPKI, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { parseHostPort } from '@wrenn/core';
import { generateKeyPair, issueCertificate, type TlsMaterial } from '@wrenn/pki';
import type { Db } from '../../db/database.js';
import { unauthorized } from '../../http/errors.js';
import type { ClusterKeys } from './cluster-keys.js';

const ISSUER = 'wrenn';
const AUDIENCE = 'wrenn-host';
export const HOST_JWT_TTL_SEC = 7 * 86_400;
export const REFRESH_TTL_MS = 60 * 86_400_000;
export const REGISTRATION_TTL_MS = 3_600_000;
const HOST_CERT_DAYS = 30;
const CONTROL_PLANE_CERT_DAYS = 2;
const CONTROL_PLANE_REISSUE_MS = 86_400_000;

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
const newToken = (prefix: string) => prefix + randomBytes(32).toString('base64url');

/** What failing in the middle of a refresh looks like, for tests ("the server died here"). */
export interface RefreshHooks {
  /** Runs after the new token is stored and before the old one is marked rotated. */
  afterIssue?: () => Promise<void>;
}

/**
 * Test only (`WRENN_TEST_FAULT`, docs/testing.md): a fault a real server process injects into itself
 * for the e2e tests. `exit-after-refresh-issue`: the process SIGKILLs itself in a refresh, after the
 * new token is stored and before the old one is marked rotated (the crash issue-then-revoke is for).
 */
export type TestFault = 'exit-after-refresh-issue';

export function refreshHooksFor(fault: TestFault | undefined): RefreshHooks {
  if (fault !== 'exit-after-refresh-issue') return {};
  return {
    afterIssue: () => {
      // Synchronous: the logger's buffered output would die with the process.
      writeSync(2, 'WRENN_TEST_FAULT=exit-after-refresh-issue: SIGKILL between issue and revoke\n');
      process.kill(process.pid, 'SIGKILL');
      return new Promise<void>(() => undefined);
    },
  };
}

/**
 * Every credential a host holds (docs/fleet.md): the one-time registration token, the host JWT
 * (ES256, 7 days), the refresh token (60 days, rotated issue-then-revoke, families revoked on
 * reuse) and its certificate; and this server's own control-plane client certificate.
 */
export class HostCredentials {
  private signingKey?: Promise<CryptoKey>;
  private verifyingKey?: Promise<CryptoKey>;
  private controlPlane?: { material: Promise<TlsMaterial>; issuedAt: number };

  constructor(
    private readonly db: Db,
    readonly keys: ClusterKeys,
    /** What every refresh runs unless its caller says otherwise (a test fault; none in production). */
    private readonly refreshHooks: RefreshHooks = {},
  ) {}

  /** A registration token for `hostId`: shown once, kept hashed, usable once within 1 hour. */
  async newRegistrationToken(hostId: string): Promise<string> {
    const token = newToken('wrr_');
    await this.db
      .insertInto('host_registration_tokens')
      .values({
        token_hash: hashToken(token),
        host_id: hostId,
        expires_at: new Date(Date.now() + REGISTRATION_TTL_MS),
      })
      .execute();
    return token;
  }

  /**
   * Uses up a registration token; the host it was made for, else 401. That host is pending, or the
   * static host when `wrenn up`'s agent takes it over (registering, it stops being static).
   */
  async consumeRegistrationToken(token: string): Promise<string> {
    const used = await this.db
      .updateTable('host_registration_tokens')
      .set({ used_at: new Date() })
      .where('token_hash', '=', hashToken(token))
      .where('used_at', 'is', null)
      .where('expires_at', '>', new Date())
      .returning('host_id')
      .executeTakeFirst();
    if (!used) throw unauthorized('registration_token: unknown, already used or expired');
    const host = await this.db
      .selectFrom('hosts')
      .select(['status', 'is_static'])
      .where('id', '=', used.host_id)
      .executeTakeFirst();
    if (!host || (host.status !== 'pending' && !host.is_static))
      throw unauthorized('registration_token: the host is no longer waiting to register');
    return used.host_id;
  }

  async issueJwt(hostId: string): Promise<string> {
    this.signingKey ??= importPKCS8(this.keys.hostTokenKey.privateKeyPem, 'ES256');
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject(hostId)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${HOST_JWT_TTL_SEC}s`)
      .sign(await this.signingKey);
  }

  /** The host id a JWT names, or undefined when it is forged, expired or malformed. */
  async verifyJwt(token: string): Promise<string | undefined> {
    this.verifyingKey ??= importSPKI(this.keys.hostTokenKey.publicKeyPem, 'ES256');
    try {
      const { payload } = await jwtVerify(token, await this.verifyingKey, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['ES256'],
      });
      return typeof payload.sub === 'string' ? payload.sub : undefined;
    } catch {
      return undefined;
    }
  }

  /** The first refresh token of a registration: a family of its own. */
  async newRefreshToken(hostId: string, family: string = randomUUID()): Promise<string> {
    const token = newToken('wrh_');
    await this.db
      .insertInto('host_refresh_tokens')
      .values({
        host_id: hostId,
        family,
        token_hash: hashToken(token),
        status: 'active',
        expires_at: new Date(Date.now() + REFRESH_TTL_MS),
      })
      .execute();
    return token;
  }

  /**
   * Rotates a refresh token: the new one is stored before the old one is marked rotated, so a
   * server that dies in between leaves the old one working. A rotated token shown again leaked:
   * its whole family is revoked. A deleted host's tokens are refused.
   */
  async rotateRefreshToken(
    token: string,
    hooks: RefreshHooks = this.refreshHooks,
  ): Promise<{ hostId: string; refreshToken: string }> {
    const row = await this.db
      .selectFrom('host_refresh_tokens')
      .innerJoin('hosts', 'hosts.id', 'host_refresh_tokens.host_id')
      .select([
        'host_refresh_tokens.id',
        'host_refresh_tokens.host_id',
        'host_refresh_tokens.family',
        'host_refresh_tokens.status',
        'host_refresh_tokens.expires_at',
        'hosts.status as host_status',
      ])
      .where('token_hash', '=', hashToken(token))
      .executeTakeFirst();
    if (!row) throw unauthorized('refresh_token: unknown');
    if (row.status === 'rotated') {
      await this.revokeFamily(row.family);
      throw unauthorized(
        'refresh_token: already used; every token of its family is revoked, register the host again',
      );
    }
    if (row.status === 'revoked') throw unauthorized('refresh_token: revoked');
    if (new Date(row.expires_at) <= new Date()) throw unauthorized('refresh_token: expired');
    if (row.host_status === 'deleted' || row.host_status === 'pending')
      throw unauthorized('refresh_token: the host was deleted');
    const refreshToken = await this.newRefreshToken(row.host_id, row.family);
    await hooks.afterIssue?.();
    await this.db
      .updateTable('host_refresh_tokens')
      .set({ status: 'rotated' })
      .where('id', '=', row.id)
      .where('status', '=', 'active')
      .execute();
    return { hostId: row.host_id, refreshToken };
  }

  async revokeFamily(family: string): Promise<void> {
    await this.db
      .updateTable('host_refresh_tokens')
      .set({ status: 'revoked' })
      .where('family', '=', family)
      .execute();
  }

  /** Every token a host holds (deleted, or registered anew) stops working. */
  async revokeHost(hostId: string): Promise<void> {
    await this.db
      .updateTable('host_refresh_tokens')
      .set({ status: 'revoked' })
      .where('host_id', '=', hostId)
      .execute();
    await this.db
      .updateTable('host_registration_tokens')
      .set({ used_at: new Date() })
      .where('host_id', '=', hostId)
      .where('used_at', 'is', null)
      .execute();
  }

  /** A host's certificate (30 days) for its stored public key, naming it and the address it listens on. */
  hostCertificate(hostId: string, publicKeyPem: string, address: string): Promise<string> {
    return issueCertificate(this.keys.ca, {
      publicKeyPem,
      identity: { kind: 'host', hostId },
      addresses: [parseHostPort(address).host],
      days: HOST_CERT_DAYS,
    });
  }

  /** This process's control-plane client certificate (2 days), reissued once a day. */
  controlPlaneMaterial(now = Date.now()): Promise<TlsMaterial> {
    if (!this.controlPlane || now - this.controlPlane.issuedAt >= CONTROL_PLANE_REISSUE_MS) {
      const material = (async () => {
        const keys = await generateKeyPair();
        const certPem = await issueCertificate(this.keys.ca, {
          publicKeyPem: keys.publicKeyPem,
          identity: { kind: 'control-plane' },
          days: CONTROL_PLANE_CERT_DAYS,
        });
        return { keyPem: keys.privateKeyPem, certPem, caPem: this.keys.ca.certPem };
      })();
      this.controlPlane = { material, issuedAt: now };
      material.catch(() => (this.controlPlane = undefined));
    }
    return this.controlPlane.material;
  }

  /** When the current control-plane certificate was made (host clients made before it are stale). */
  get controlPlaneIssuedAt(): number | undefined {
    return this.controlPlane?.issuedAt;
  }
}

/** Whether `pem` is an EC P-256 public key in SPKI PEM (what the agent must send). */
export function isP256PublicKey(pem: string): boolean {
  try {
    const key = createPublicKey({ key: pem, format: 'pem' });
    return (
      key.type === 'public' &&
      key.asymmetricKeyType === 'ec' &&
      key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
    );
  } catch {
    return false;
  }
}
