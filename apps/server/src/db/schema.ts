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
  status: 'pending' | 'running' | 'paused' | 'stopped' | 'error';
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

export interface Database {
  templates: TemplatesTable;
  sandbox_metrics: SandboxMetricsTable;
  users: UsersTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  api_keys: ApiKeysTable;
  sandboxes: SandboxesTable;
}
