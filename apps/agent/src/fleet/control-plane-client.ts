import { errorMessage } from '@wrenn/core';
import { z } from 'zod';
import type { HeartbeatSandbox } from './pause-all.js';

/**
 * The agent's calls to the control plane's host API (docs/fleet.md): register, refresh, heartbeat.
 * Plain HTTP(S) with JSON bodies, field names as on the wire.
 */

/** The control plane answered 401 or 403: the token (registration, refresh or access) is refused. */
export class ControlPlaneRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ControlPlaneRefusal';
  }
}

export interface HostFacts {
  arch: string;
  cpu_cores: number;
  memory_mb: number;
  disk_mb: number;
}

export interface RegisterRequest extends HostFacts {
  registration_token: string;
  /** host:port the agent listens on, for the control plane to dial. */
  address: string;
  /** SPKI PEM of the key the host made; the private key never leaves it. */
  public_key: string;
  agent_version: string;
}

const registered = z.object({
  host_id: z.string().min(1),
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  certificate: z.string().min(1),
  ca_certificate: z.string().min(1),
  heartbeat_interval_sec: z.number().positive().optional(),
});
export type RegisterResponse = z.infer<typeof registered>;

const refreshed = z.object({
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  certificate: z.string().min(1),
});
export type RefreshResponse = z.infer<typeof refreshed>;

export interface HeartbeatRequest {
  capacity: { cpu_cores: number; memory_mb: number; disk_mb: number };
  load: { cpu_pct: number; memory_used_mb: number; disk_used_mb: number };
  sandboxes: HeartbeatSandbox[];
}

const heartbeatAnswer = z.object({ heartbeat_interval_sec: z.number().positive().optional() });
export type HeartbeatResponse = z.infer<typeof heartbeatAnswer>;

/** What the rest of the fleet code needs of the control plane (tests pass fakes). */
export interface ControlPlaneApi {
  register(body: RegisterRequest): Promise<RegisterResponse>;
  refresh(refreshToken: string): Promise<RefreshResponse>;
  heartbeat(accessToken: string, body: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse>;
}

export class ControlPlaneClient implements ControlPlaneApi {
  constructor(
    readonly baseUrl: string,
    private readonly timeoutMs: number,
  ) {}

  async register(body: RegisterRequest): Promise<RegisterResponse> {
    return registered.parse(await this.post('/v1/hosts/register', body));
  }

  async refresh(refreshToken: string): Promise<RefreshResponse> {
    return refreshed.parse(await this.post('/v1/hosts/refresh', { refresh_token: refreshToken }));
  }

  async heartbeat(
    accessToken: string,
    body: HeartbeatRequest,
    signal?: AbortSignal,
  ): Promise<HeartbeatResponse> {
    return heartbeatAnswer.parse(await this.post('/v1/hosts/heartbeat', body, accessToken, signal));
  }

  private async post(route: string, body: unknown, bearer?: string, signal?: AbortSignal): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const res = await fetch(`${this.baseUrl}${route}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
      },
      body: JSON.stringify(body),
      signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
    }).catch((err: unknown) => {
      // fetch says only "fetch failed"; the reason (ECONNREFUSED, a timeout…) is its cause.
      const cause = (err as { cause?: unknown }).cause;
      throw new Error(`POST ${this.baseUrl}${route}: ${errorMessage(cause ?? err)}`);
    });
    const text = await res.text();
    if (res.ok) return JSON.parse(text || '{}') as unknown;
    const message = errorMessageOf(text) ?? `HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) throw new ControlPlaneRefusal(res.status, message);
    throw new Error(`POST ${route}: ${res.status} ${message}`);
  }
}

function errorMessageOf(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { message?: unknown; code?: unknown };
    return typeof body.message === 'string' ? body.message : undefined;
  } catch {
    return text.slice(0, 200) || undefined;
  }
}
