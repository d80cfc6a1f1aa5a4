import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Client } from '@connectrpc/connect';
import type { Logger } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { AuthLimits } from '../auth/rate-limits.js';
import type { SessionTokens } from '../auth/tokens.js';
import type { Db } from '../db/database.js';
import type { BuildFiles } from '../services/builds/build-files.js';
import type { BuildQueue } from '../services/builds/builds.js';
import type { Fleet } from '../services/fleet/fleet.js';
import type { Hosts } from '../services/fleet/host-agents.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';

export type AgentClient = Client<typeof hostagent.HostAgentService>;

export interface ServerDeps {
  db: Db;
  tokens: SessionTokens;
  /** Every host's agent, and placement: what sandbox operations need. */
  hosts: Hosts;
  /** Hosts' credentials and directory: what the host routes need. */
  fleet: Fleet;
  logger: Logger;
  /**
   * Anyone may sign up (WRENN_OPEN_SIGNUP); otherwise only with an invite an admin made
   * (`POST /v1/admin/invites`). Default false.
   */
  openSignup?: boolean;
  /** The auth routes' rate limits (`DEFAULT_AUTH_LIMITS`), counted in the database. */
  authLimits?: AuthLimits;
  /** Largest upload, bytes (default 1 GiB); past it 413. */
  uploadMaxBytes?: number;
  /**
   * Told when a sandbox is destroyed, paused, resumed or snapshotted (its network identity ends or
   * changes): the sandbox proxy drops its connections to it (`SandboxProxy.release`).
   */
  sandboxReleased?: (sandboxId: string) => void;
  /**
   * Told when a sandbox has started running (created or resumed): the sandbox proxy gets the way to
   * it ready before its first request (`SandboxProxy.warm`).
   */
  sandboxStarted?: (sandboxId: string) => void;
  /** Template builds: the uploaded files COPY steps take from, and the queue that runs builds. */
  builds: { files: BuildFiles; queue: BuildQueue };
  /** Prometheus metrics (request timing, heartbeats); none: nothing is measured. */
  metrics?: ServerMetrics;
  /** The dashboard's built files, served at `/` (none: `/` says how to build it). */
  dashboardDir?: string;
}

/** What the auth middleware puts on the request context. */
export interface AuthVars {
  userId: string;
  teamId: string;
  /** The API key a request came with (the audit log's actor). */
  apiKeyId: string;
}

export type Env = { Variables: Partial<AuthVars> };
export type App = OpenAPIHono<Env>;
