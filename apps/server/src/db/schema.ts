import type { ColumnType, Generated } from 'kysely';

// The database as the queries see it. Migrations (migrations.ts) are the source of truth; this
// mirrors them for the type checker.
type CreatedAt = ColumnType<Date, never, never>;

export interface UsersTable {
  id: Generated<string>;
  email: string;
  password_hash: string;
  is_admin: Generated<boolean>;
  created_at: CreatedAt;
}

export interface TeamsTable {
  id: Generated<string>;
  name: string;
  /** Brings its own hosts: its sandboxes run only there (docs/fleet.md). */
  is_byoc: Generated<boolean>;
  created_at: CreatedAt;
}

export interface TeamMembersTable {
  team_id: string;
  user_id: string;
  role: 'owner' | 'member';
  created_at: CreatedAt;
}

export interface ApiKeysTable {
  id: Generated<string>;
  team_id: string;
  name: string;
  /** The first characters of the key, shown in listings so people can tell keys apart. */
  prefix: string;
  /** SHA-256 of the whole key, hex; the key itself is shown once and never stored. */
  key_hash: string;
  created_by: string;
  created_at: CreatedAt;
  last_used_at: Date | null;
}

export interface SandboxesTable {
  id: string;
  team_id: string;
  template: string;
  /** `missing`: its host stopped sending heartbeats; reversible when the host returns. */
  status: 'pending' | 'running' | 'paused' | 'stopped' | 'error' | 'missing';
  /** NULL only for rows from before the fleet: the server's static host. */
  host_id: string | null;
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  timeout_sec: number;
  metadata: ColumnType<Record<string, string>, string, string>;
  /** Why the sandbox is in its status when nobody asked (paused for inactivity, out of memory…). */
  status_reason: Generated<string>;
  auto_paused: Generated<boolean>;
  on_timeout: Generated<'pause' | 'kill'>;
  auto_resume: Generated<boolean>;
  /** A paused sandbox being copied to this host; both hosts' heartbeats leave it alone meanwhile. */
  moving_to: Generated<string | null>;
  moving_since: Generated<Date | null>;
  /**
   * A second host holding a copy of this paused sandbox, so a lost home host strands nothing. Set
   * when the copy starts (that host's heartbeats then keep it); `replica_at` only once it is whole.
   */
  replica_host_id: Generated<string | null>;
  replica_at: Generated<Date | null>;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, never, Date>;
}

export interface TemplatesTable {
  id: Generated<string>;
  /** NULL: a platform template, visible to every team. */
  team_id: string | null;
  name: string;
  kind: 'snapshot' | 'image';
  source_sandbox_id: string | null;
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  size_bytes: ColumnType<string, string | number | bigint, never>;
  created_at: CreatedAt;
}

export interface SandboxMetricsTable {
  sandbox_id: string;
  tier: '10m' | '2h' | '24h';
  time: Date;
  cpu_used_pct: number;
  cpu_count: number;
  mem_used_bytes: ColumnType<string, string | number | bigint, never>;
  mem_total_bytes: ColumnType<string, string | number | bigint, never>;
  disk_used_bytes: ColumnType<string, string | number | bigint, never>;
  disk_total_bytes: ColumnType<string, string | number | bigint, never>;
}

export interface ClusterKeysTable {
  name: 'ca' | 'host_token_key';
  value: ColumnType<Record<string, string>, string, never>;
  created_at: CreatedAt;
}

export interface HostLoad {
  cpu_pct: number;
  memory_used_mb: number;
  disk_used_mb: number;
}

export interface HostsTable {
  id: Generated<string>;
  kind: 'platform' | 'byoc';
  team_id: string | null;
  status: 'pending' | 'online' | 'unreachable' | 'deleted';
  is_static: Generated<boolean>;
  /** host:port the agent listens on (a static host: its URL). */
  address: string | null;
  arch: string | null;
  agent_version: string | null;
  cpu_cores: number | null;
  memory_mb: number | null;
  disk_mb: number | null;
  /** SPKI PEM of the agent's key; its certificate is issued for it. */
  public_key: string | null;
  load: ColumnType<HostLoad | null, string | null, string | null>;
  running_count: Generated<number>;
  paused_count: Generated<number>;
  /** Out of placement; its sandboxes are being moved away (POST /v1/admin/hosts/{id}/drain). */
  draining: Generated<boolean>;
  /** Its agent's warm pools as the leader last read them (`services/fleet/warm-pools.ts`). */
  warm_pools: ColumnType<HostWarmPool[] | null, string | null, string | null>;
  warm_pools_at: Date | null;
  last_heartbeat_at: Date | null;
  created_at: CreatedAt;
  registered_at: Date | null;
}

/** One pool on one host, as its agent reports it. */
export interface HostWarmPool {
  template: string;
  size: number;
  ready: number;
  claims: number;
  misses: number;
  refills: number;
  failures: number;
  last_error: string;
}

/**
 * A warm pool the control plane keeps on every host that may serve its template (each such host
 * keeps `size` ready sandboxes). `template` is the agent's name (`base`, `snap-<uuid>`).
 */
export interface WarmPoolsTable {
  template: string;
  /** A team's snapshot template (its pool goes with it); NULL: a platform template. */
  template_id: string | null;
  size: number;
  updated_at: ColumnType<Date, never, Date>;
}

/** Which hosts hold a template's files. */
export interface TemplateReplicasTable {
  template_id: string;
  host_id: string;
  created_at: CreatedAt;
}

/** A delete a host missed while it was down, done when it next reports in. */
export interface HostCleanupsTable {
  host_id: string;
  kind: 'template';
  /** What the agent knows it as. */
  name: string;
  created_at: CreatedAt;
}

export interface HostRegistrationTokensTable {
  /** SHA-256 of the token, hex. */
  token_hash: string;
  host_id: string;
  expires_at: Date;
  used_at: Date | null;
}

export interface HostRefreshTokensTable {
  id: Generated<string>;
  host_id: string;
  family: string;
  token_hash: string;
  status: 'active' | 'rotated' | 'revoked';
  expires_at: Date;
  created_at: CreatedAt;
}

export interface Database {
  cluster_keys: ClusterKeysTable;
  hosts: HostsTable;
  host_registration_tokens: HostRegistrationTokensTable;
  host_refresh_tokens: HostRefreshTokensTable;
  templates: TemplatesTable;
  template_replicas: TemplateReplicasTable;
  warm_pools: WarmPoolsTable;
  host_cleanups: HostCleanupsTable;
  sandbox_metrics: SandboxMetricsTable;
  users: UsersTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  api_keys: ApiKeysTable;
  sandboxes: SandboxesTable;
}
