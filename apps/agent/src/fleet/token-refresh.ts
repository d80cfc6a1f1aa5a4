import type { Logger } from '@wrenn/core';
import type { ControlPlaneApi } from './control-plane-client.js';
import { tlsMaterialOf, type CredentialsStore, type HostCredentials } from './credentials-store.js';
import { validityOf, type TlsMaterial } from '@wrenn/pki';

/** A credential is renewed once less than this share of its lifetime is left. */
const RENEW_AT_REMAINING_SHARE = 0.25;

/**
 * The host's credentials while the agent runs: the access token for calls to the control plane and
 * the certificate its server presents. `refresh` renews both (JWT near expiry, certificate near
 * expiry, or a 401) and stores the new tokens before anything uses them: the control plane rotates
 * refresh tokens, so the old one may already be spent.
 */
export class HostSession {
  private refreshing?: Promise<void>;

  constructor(
    private credentials: HostCredentials,
    private readonly store: Pick<CredentialsStore, 'saveTokens' | 'saveCertificate'>,
    private readonly api: Pick<ControlPlaneApi, 'refresh'>,
    /** Called with the renewed certificate, to put it in place on the running server. */
    private readonly onCertificate: (material: TlsMaterial) => void,
    private readonly logger: Logger,
  ) {}

  get hostId(): string {
    return this.credentials.hostId;
  }

  get accessToken(): string {
    return this.credentials.accessToken;
  }

  get tlsMaterial(): TlsMaterial {
    return tlsMaterialOf(this.credentials);
  }

  /** Whether the access token or the certificate is close enough to expiry to renew now. */
  refreshDue(now = Date.now()): boolean {
    const jwt = jwtValidity(this.credentials.accessToken);
    const cert = certificateValidity(this.credentials.certPem);
    return [jwt, cert].some((v) => v !== undefined && nearExpiry(v, now));
  }

  /** Renews tokens and certificate; concurrent callers share one refresh. */
  refresh(): Promise<void> {
    return (this.refreshing ??= this.renew().finally(() => (this.refreshing = undefined)));
  }

  private async renew(): Promise<void> {
    const answer = await this.api.refresh(this.credentials.refreshToken);
    const tokens = { accessToken: answer.access_token, refreshToken: answer.refresh_token };
    await this.store.saveTokens(tokens);
    this.credentials = { ...this.credentials, ...tokens };
    if (answer.certificate !== this.credentials.certPem) {
      await this.store.saveCertificate(answer.certificate);
      this.credentials = { ...this.credentials, certPem: answer.certificate };
      this.onCertificate(this.tlsMaterial);
    }
    this.logger.info({ hostId: this.hostId }, 'host credentials refreshed');
  }
}

interface Validity {
  from: number;
  to: number;
}

function nearExpiry({ from, to }: Validity, now: number): boolean {
  return to - now < (to - from) * RENEW_AT_REMAINING_SHARE;
}

/** A JWT's `iat`..`exp` (read, not verified: the agent only schedules its own renewal by it). */
export function jwtValidity(token: string): Validity | undefined {
  const [, payload] = token.split('.');
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
      iat?: unknown;
      exp?: unknown;
    };
    if (typeof claims.exp !== 'number') return undefined;
    const to = claims.exp * 1000;
    return { from: typeof claims.iat === 'number' ? claims.iat * 1000 : to, to };
  } catch {
    return undefined;
  }
}

function certificateValidity(pem: string): Validity | undefined {
  try {
    return validityOf(pem);
  } catch {
    return undefined;
  }
}
