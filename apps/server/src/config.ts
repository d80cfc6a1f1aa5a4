import path from 'node:path';
import { z } from 'zod';
import { errorMessage, parseConfig, parseHostPort } from '@wrenn/core';
import { parseMetricsAddress, type MetricsAddress } from '@wrenn/core/metrics';
import type { TestFault } from './services/fleet/host-credentials.js';

// Every setting of the control plane, with its default. Parsed once in main; nothing else reads env.
const shape = {
  WRENN_DIR: z.string().default('/var/lib/wrenn'),
  WRENN_SERVER_LISTEN: z.string().default('127.0.0.1:8080'),
  // Prometheus `/metrics`, on a listener of its own, never the API's (docs/observability.md):
  // loopback by default, `off` for none. A default address that is taken only turns metrics off.
  WRENN_METRICS_LISTEN: z.string().default('127.0.0.1:9470'),
  // PostgreSQL when set; otherwise an embedded PGlite database in <WRENN_DIR>/db.
  DATABASE_URL: z.string().optional(),
  // HS256 key for user JWTs; generated once into the data dir when not set.
  WRENN_JWT_SECRET: z.string().min(32).optional(),
  // The static host: an agent reached over plain h2c, without registration or heartbeats (one box,
  // the e2e tests). Empty: none, every host registers (docs/fleet.md).
  WRENN_AGENT_URL: z.string().default('http://127.0.0.1:7070'),
  // A registered host whose last heartbeat is older than this is unreachable, its sandboxes missing.
  WRENN_HOST_STALE_SEC: z.coerce.number().int().min(1).default(90),
  // A sandbox paused this long gets a copy on a second host (resumable there if its host is lost);
  // 0: no copies.
  WRENN_PAUSED_REPLICA_AFTER_SEC: z.coerce.number().int().min(0).default(60),
  // What agents are told: how often to send heartbeats.
  WRENN_HEARTBEAT_SEC: z.coerce.number().int().min(1).default(30),
  // Placement: capacity × over-commit − reserve is what a host may give its sandboxes.
  WRENN_OVERCOMMIT_CPU: z.coerce.number().min(0.1).default(4),
  WRENN_OVERCOMMIT_MEMORY: z.coerce.number().min(0.1).default(1),
  WRENN_OVERCOMMIT_DISK: z.coerce.number().min(0.1).default(1),
  WRENN_RESERVE_CPU: z.coerce.number().min(0).default(0),
  WRENN_RESERVE_MEMORY_MB: z.coerce.number().int().min(0).default(1024),
  WRENN_RESERVE_DISK_MB: z.coerce.number().int().min(0).default(10_240),
  // How much of its size a paused sandbox counts for (memory and CPU; its disk counts fully).
  WRENN_PAUSED_WEIGHT: z.coerce.number().min(0).max(1).default(0.25),
  LOG_LEVEL: z.string().default('info'),
  // Largest file one upload may carry; bigger ones get 413 (before any byte reaches the sandbox
  // when the request says its length).
  WRENN_UPLOAD_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(1024 ** 3),
  // Template builds running at once across every server on the database (docs/templates.md).
  WRENN_BUILD_WORKERS: z.coerce.number().int().min(1).max(64).default(2),
  // The longest one build may run.
  WRENN_BUILD_TIMEOUT_SEC: z.coerce.number().int().min(60).default(7200),
  // Anyone may sign up; otherwise (the default) only with an admin's invite (POST /v1/admin/invites).
  WRENN_OPEN_SIGNUP: z.stringbool().default(false),
  // Proxies (comma-separated addresses or CIDRs) whose X-Forwarded-For/Proto/Host are believed; from
  // any other peer they are dropped. Empty (the default): none, loopback included (docs/security.md).
  WRENN_TRUSTED_PROXIES: z.string().default(''),
  // How long the audit log keeps an entry.
  WRENN_AUDIT_RETENTION_DAYS: z.coerce.number().int().min(1).default(90),
  // The dashboard's build (apps/dashboard/dist, made by `npm run build`), served at `/`.
  WRENN_DASHBOARD_DIR: z.string().default(path.resolve(import.meta.dirname, '../../dashboard/dist')),
  // Test only (docs/testing.md): a fault this process injects into itself for the e2e tests.
  WRENN_TEST_FAULT: z.enum(['exit-after-refresh-issue']).optional(),
};

export interface ServerConfig {
  dataDir: string;
  listenHost: string;
  listenPort: number;
  /** Where `/metrics` listens; undefined: nowhere. */
  metrics?: MetricsAddress;
  database: { kind: 'postgres'; url: string } | { kind: 'pglite'; dir: string };
  jwtSecret?: string;
  /** The static host's URL; empty: none. */
  agentUrl: string;
  logLevel: string;
  uploadMaxBytes?: number;
  /** Template builds: how many run at once (cluster-wide) and for how long at most. */
  builds?: { workers: number; timeoutSec: number };
  /** The fleet's settings; defaults as in the schema above. */
  fleet?: FleetConfig;
  /** Signup without an invite (WRENN_OPEN_SIGNUP); default false. */
  openSignup?: boolean;
  /** Addresses or CIDRs of the proxies whose X-Forwarded-* are believed; default none. */
  trustedProxies?: string[];
  /** How long audit entries are kept (days); default 90. */
  auditRetentionDays?: number;
  /** The dashboard's built files (WRENN_DASHBOARD_DIR), served at `/`. */
  dashboardDir?: string;
  /** Test only: a fault to inject (WRENN_TEST_FAULT); never set in production. */
  testFault?: TestFault;
}

export interface PlacementConfig {
  overcommit: { cpu: number; memory: number; disk: number };
  reserve: { cpu: number; memoryMb: number; diskMb: number };
  pausedWeight: number;
}

export interface FleetConfig {
  hostStaleSec: number;
  heartbeatSec: number;
  /** How often a server that does not lead tries to take the leader lock (PostgreSQL). */
  leaderRetryMs: number;
  /** Paused this long (s), a sandbox is copied to a second host; 0: never. */
  pausedReplicaAfterSec: number;
  placement: PlacementConfig;
}

export const FLEET_DEFAULTS: FleetConfig = {
  hostStaleSec: 90,
  heartbeatSec: 30,
  leaderRetryMs: 3000,
  pausedReplicaAfterSec: 60,
  placement: {
    overcommit: { cpu: 4, memory: 1, disk: 1 },
    reserve: { cpu: 0, memoryMb: 1024, diskMb: 10_240 },
    pausedWeight: 0.25,
  },
};

function metricsAddress(value: string, given: boolean): MetricsAddress | undefined {
  try {
    return parseMetricsAddress(value, given);
  } catch (err) {
    throw new Error(`invalid configuration: WRENN_METRICS_LISTEN: ${errorMessage(err)}`);
  }
}

export function loadServerConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const raw = parseConfig(shape, env);
  let listen: { host: string; port: number };
  try {
    // Port 0: any free port (tests).
    listen = parseHostPort(raw.WRENN_SERVER_LISTEN, { allowZero: true });
  } catch (err) {
    throw new Error(`invalid configuration: WRENN_SERVER_LISTEN: ${errorMessage(err)}`);
  }
  return {
    dataDir: raw.WRENN_DIR,
    listenHost: listen.host,
    listenPort: listen.port,
    metrics: metricsAddress(raw.WRENN_METRICS_LISTEN, env.WRENN_METRICS_LISTEN !== undefined),
    database: raw.DATABASE_URL
      ? { kind: 'postgres', url: raw.DATABASE_URL }
      : { kind: 'pglite', dir: path.join(raw.WRENN_DIR, 'db') },
    jwtSecret: raw.WRENN_JWT_SECRET,
    agentUrl: raw.WRENN_AGENT_URL,
    logLevel: raw.LOG_LEVEL,
    uploadMaxBytes: raw.WRENN_UPLOAD_MAX_BYTES,
    builds: { workers: raw.WRENN_BUILD_WORKERS, timeoutSec: raw.WRENN_BUILD_TIMEOUT_SEC },
    dashboardDir: raw.WRENN_DASHBOARD_DIR,
    testFault: raw.WRENN_TEST_FAULT,
    openSignup: raw.WRENN_OPEN_SIGNUP,
    trustedProxies: raw.WRENN_TRUSTED_PROXIES.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    auditRetentionDays: raw.WRENN_AUDIT_RETENTION_DAYS,
    fleet: {
      hostStaleSec: raw.WRENN_HOST_STALE_SEC,
      heartbeatSec: raw.WRENN_HEARTBEAT_SEC,
      leaderRetryMs: FLEET_DEFAULTS.leaderRetryMs,
      pausedReplicaAfterSec: raw.WRENN_PAUSED_REPLICA_AFTER_SEC,
      placement: {
        overcommit: {
          cpu: raw.WRENN_OVERCOMMIT_CPU,
          memory: raw.WRENN_OVERCOMMIT_MEMORY,
          disk: raw.WRENN_OVERCOMMIT_DISK,
        },
        reserve: {
          cpu: raw.WRENN_RESERVE_CPU,
          memoryMb: raw.WRENN_RESERVE_MEMORY_MB,
          diskMb: raw.WRENN_RESERVE_DISK_MB,
        },
        pausedWeight: raw.WRENN_PAUSED_WEIGHT,
      },
    },
  };
}
