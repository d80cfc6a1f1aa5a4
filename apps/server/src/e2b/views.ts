import { timestampDate } from '@bufbuild/protobuf/wkt';
import { ENVD_VERSION, type hostagent } from '@wrenn/contracts';
import { isSandboxId, MAX_TIMEOUT_SEC, SANDBOX_ID_RULE } from '@wrenn/core';
import { ApiError } from '../http/errors.js';
import type { MetricPoint } from '../services/metrics-store.js';
import type { SandboxRow } from '../services/sandbox-access.js';
import type { SandboxNetwork } from '../services/network-policy.js';

// How E2B's API shows things, and how it reads its parameters.

/** E2B's legacy constant; its Python SDK requires the field. */
const CLIENT_ID = '6532622b';

/**
 * A sandbox as create, connect and resume answer it; a private one's traffic token with it (the
 * owner's: these answer only its team).
 */
export function sandboxView(
  row: SandboxRow,
  info: hostagent.Sandbox | undefined,
  tokens: { trafficToken(sandboxId: string): string },
) {
  return {
    sandboxID: row.id,
    templateID: row.template,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    envdAccessToken: info?.envdAccessToken ?? '',
    trafficAccessToken: row.allow_public_traffic ? null : tokens.trafficToken(row.id),
    domain: null,
  };
}

/** The network settings as E2B shows them (get). */
export function networkView(row: Pick<SandboxRow, 'network' | 'allow_public_traffic'>) {
  const network: SandboxNetwork | null = row.network;
  return {
    allowInternetAccess: network?.allow_internet ?? null,
    network: {
      ...(network ? { allowOut: network.allow_out, denyOut: network.deny_out } : {}),
      allowPublicTraffic: row.allow_public_traffic,
    },
  };
}

/** A sandbox as get and list show it. `endAt` is last activity + timeout (Wrenn's clock is inactivity). */
export function detailView(row: SandboxRow, info: hostagent.Sandbox | undefined) {
  const startedAt = new Date(row.created_at);
  const lastActive = info?.lastActiveAt ? timestampDate(info.lastActiveAt) : new Date(row.updated_at);
  const paused = row.status === 'paused';
  const endAt = paused
    ? new Date(row.updated_at)
    : new Date(lastActive.getTime() + (row.timeout_sec || MAX_TIMEOUT_SEC) * 1000);
  return {
    sandboxID: row.id,
    templateID: row.template,
    clientID: CLIENT_ID,
    startedAt: startedAt.toISOString(),
    endAt: endAt.toISOString(),
    cpuCount: row.vcpus,
    memoryMB: row.memory_mb,
    diskSizeMB: row.disk_mb,
    envdVersion: ENVD_VERSION,
    state: paused ? 'paused' : 'running',
    metadata: row.metadata,
    lifecycle: { onTimeout: row.on_timeout, autoResume: row.auto_resume },
    ...networkView(row),
  };
}

export function metricView(p: MetricPoint) {
  const time = new Date(p.time);
  return {
    timestamp: p.time,
    timestampUnix: Math.floor(time.getTime() / 1000),
    cpuCount: p.cpu_count,
    cpuUsedPct: p.cpu_used_pct,
    memUsed: p.mem_used_bytes,
    memTotal: p.mem_total_bytes,
    memCache: 0,
    diskUsed: p.disk_used_bytes,
    diskTotal: p.disk_total_bytes,
  };
}

/** `<id>` or E2B's legacy `<id>-<clientID>`. */
export function sandboxIdParam(raw: string | undefined): string {
  const id = (raw ?? '').split('-')[0]!;
  if (!isSandboxId(id)) throw new ApiError(400, 'invalid_argument', `sandboxID: ${SANDBOX_ID_RULE}`);
  return id;
}

/** E2B's JS SDK encodes the filter twice over (`a%3Db%252520c` for `{a: "b c"}`). */
export function parseMetadataFilter(raw: string): Record<string, string> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new ApiError(400, 'invalid_argument', 'metadata: malformed filter');
  }
  return Object.fromEntries(new URLSearchParams(decoded));
}

/** A page's cursor (`X-Next-Token`): the last sandbox's creation time and id. */
export function makeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}__${id}`).toString('base64url');
}

export function parseCursor(token: string): { createdAt: Date; id: string } {
  const [time, id] = Buffer.from(token, 'base64url').toString('utf8').split('__');
  const createdAt = new Date(time ?? '');
  if (!id || Number.isNaN(createdAt.getTime()))
    throw new ApiError(400, 'invalid_argument', 'nextToken: invalid cursor');
  return { createdAt, id };
}
