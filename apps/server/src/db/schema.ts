import type { ColumnType, Generated } from 'kysely';
import type { SandboxNetwork } from '../services/network-policy.js';

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
  /** The template build this sandbox runs (not listed as the team's). */
  build_id: Generated<string | null>;
  /** Its egress policy as given (services/network-policy.ts); null: none of its own. */
  network: ColumnType<SandboxNetwork | null, string | null | undefined, string | null>;
  /** false: proxied traffic needs the sandbox's traffic token (E2B's `allowPublicTraffic`). */
  allow_public_traffic: Generated<boolean>;
  /** Processes its agent killed because it went past its memory (it lived on; docs/gvisor.md). */
  oom_kills: Generated<number>;
  last_oom_kill: ColumnType<OomKillRecord | null, string | null | undefined, string | null>;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, never, Date>;
}

/** The last process killed for memory in a sandbox, as its agent reported it. */
export interface OomKillRecord {
  at: string;
  pid: number;
  command: string;
  memory_bytes: number;
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
  /**
   * `snapshot`: a team's snapshot of a sandbox; `template`: a built template (its files are its
   * `artifact_id`'s); `artifact`: the files of one ready build or one build cache layer.
   */
  origin: Generated<'snapshot' | 'template' | 'artifact'>;
  /** A built template's current artifact (its latest ready build). */
  artifact_id: Generated<string | null>;
  /** An artifact made on an image imported for its build (`img-…`), which hosts need below it. */
  base_artifact_id: Generated<string | null>;
  /** An artifact's build state: `{ env, workdir?, user? }`; sandboxes from it get `env`. */
  defaults: ColumnType<TemplateDefaults | null, string | null | undefined, string | null>;
  created_at: CreatedAt;
}

export interface TemplateDefaults {
  env: Record<string, string>;
  workdir?: string;
  user?: string;
}

export type BuildStatus = 'waiting' | 'building' | 'ready' | 'error' | 'cancelled';

export interface TemplateBuildsTable {
  id: Generated<string>;
  /** The named template this build makes (origin `template`). */
  template_id: string;
  /** NULL: a platform template (built by an admin). */
  team_id: string | null;
  status: BuildStatus;
  kind: 'snapshot' | 'image';
  /** What to build (`services/builds/spec.ts`); registry credentials are removed when it ends. */
  spec: ColumnType<unknown, string, string>;
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  tags: ColumnType<string[], string[] | undefined, string[]>;
  skip_cache: Generated<boolean>;
  step_count: Generated<number>;
  steps_done: Generated<number>;
  /** Steps taken from the cache instead of run. */
  cached_steps: Generated<number>;
  current_step: Generated<string | null>;
  /** Why it failed: `{ step, message, log_tail }`. */
  reason: ColumnType<BuildFailure | null, string | null, string | null>;
  host_id: Generated<string | null>;
  sandbox_id: Generated<string | null>;
  artifact_id: Generated<string | null>;
  attempts: Generated<number>;
  cancel_requested: Generated<boolean>;
  created_by: string | null;
  created_at: CreatedAt;
  started_at: Generated<Date | null>;
  finished_at: Generated<Date | null>;
}

export interface BuildFailure {
  /** The step's index (`0` the base, `1…n` the steps, E2B style) or `finalize`. */
  step: string;
  message: string;
  log_tail: string[];
}

export interface TemplateBuildLogsTable {
  seq: Generated<string>;
  build_id: string;
  at: Date;
  level: 'debug' | 'info' | 'warn' | 'error';
  step: string | null;
  message: string;
}

export interface TemplateTagsTable {
  template_id: string;
  tag: string;
  build_id: string;
  created_at: CreatedAt;
}

export interface BuildCacheTable {
  /** `team:<uuid>` or `platform`: a layer is only reused where it was made. */
  scope: string;
  key: string;
  artifact_id: string;
  /** The build state after the layer (env, workdir, user). */
  state: ColumnType<unknown, string, string>;
  created_at: CreatedAt;
  used_at: ColumnType<Date, Date | undefined, Date>;
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

/** One thing someone did (services/audit.ts). */
export interface AuditLogTable {
  id: Generated<string>;
  at: ColumnType<Date, Date | undefined, never>;
  actor_user_id: string | null;
  actor_api_key_id: string | null;
  team_id: string | null;
  action: string;
  target: string | null;
  result: 'ok' | 'denied' | 'failed';
  request_id: string | null;
  ip: string | null;
  details: ColumnType<Record<string, unknown> | null, string | null, never>;
}

/** A one-time invitation to sign up (only its SHA-256 is stored). */
export interface InvitesTable {
  id: Generated<string>;
  token_hash: string;
  /** Only this email may use it; null: anyone holding it. */
  email: string | null;
  created_by: string | null;
  created_at: CreatedAt;
  expires_at: Date;
  used_at: Date | null;
  used_by: string | null;
}

/** rate-limiter-flexible's Postgres store: a counter per key, `expire` in epoch ms. */
export interface AuthRateLimitsTable {
  key: string;
  points: number;
  expire: ColumnType<string | null, number | null, number | null>;
}

export interface Database {
  audit_log: AuditLogTable;
  invites: InvitesTable;
  auth_rate_limits: AuthRateLimitsTable;
  cluster_keys: ClusterKeysTable;
  hosts: HostsTable;
  host_registration_tokens: HostRegistrationTokensTable;
  host_refresh_tokens: HostRefreshTokensTable;
  templates: TemplatesTable;
  template_replicas: TemplateReplicasTable;
  template_builds: TemplateBuildsTable;
  template_build_logs: TemplateBuildLogsTable;
  template_tags: TemplateTagsTable;
  build_cache: BuildCacheTable;
  warm_pools: WarmPoolsTable;
  host_cleanups: HostCleanupsTable;
  sandbox_metrics: SandboxMetricsTable;
  users: UsersTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  api_keys: ApiKeysTable;
  sandboxes: SandboxesTable;
}
