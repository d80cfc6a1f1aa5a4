import { sql, type Kysely } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';

// Versioned migrations, in code so they ship with the program; applied in name order at start.
const migrations: Record<string, Migration> = {
  '0001_users_teams_keys_sandboxes': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('users')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('email', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('is_admin', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createTable('teams')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createTable('team_members')
        .addColumn('team_id', 'uuid', (c) => c.notNull().references('teams.id').onDelete('cascade'))
        .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('role', 'text', (c) => c.notNull().check(sql`role in ('owner', 'member')`))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('team_members_pk', ['team_id', 'user_id'])
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('team_id', 'uuid', (c) => c.notNull().references('teams.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_by', 'uuid', (c) => c.notNull().references('users.id'))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('last_used_at', 'timestamptz')
        .execute();
      await db.schema
        .createTable('sandboxes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('team_id', 'uuid', (c) => c.notNull().references('teams.id'))
        .addColumn('template', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mb', 'integer', (c) => c.notNull())
        .addColumn('disk_mb', 'integer', (c) => c.notNull())
        .addColumn('timeout_sec', 'integer', (c) => c.notNull())
        .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createIndex('sandboxes_team_idx')
        .on('sandboxes')
        .columns(['team_id', 'status'])
        .execute();
    },
  },
  '0002_sandbox_status_reason': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .alterTable('sandboxes')
        .addColumn('status_reason', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('auto_paused', 'boolean', (c) => c.notNull().defaultTo(false))
        .execute();
    },
  },
  '0003_templates_and_metrics': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('templates')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        // NULL = a platform template every team sees (like `base`).
        .addColumn('team_id', 'uuid', (c) => c.references('teams.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('snapshot', 'image')`))
        .addColumn('source_sandbox_id', 'text')
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mb', 'integer', (c) => c.notNull())
        .addColumn('disk_mb', 'integer', (c) => c.notNull())
        .addColumn('size_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint('templates_team_name', ['team_id', 'name'])
        .execute();
      await db.schema
        .createTable('sandbox_metrics')
        .addColumn('sandbox_id', 'text', (c) => c.notNull().references('sandboxes.id').onDelete('cascade'))
        .addColumn('tier', 'text', (c) => c.notNull().check(sql`tier in ('10m', '2h', '24h')`))
        .addColumn('time', 'timestamptz', (c) => c.notNull())
        .addColumn('cpu_used_pct', 'double precision', (c) => c.notNull())
        .addColumn('cpu_count', 'integer', (c) => c.notNull())
        .addColumn('mem_used_bytes', 'bigint', (c) => c.notNull())
        .addColumn('mem_total_bytes', 'bigint', (c) => c.notNull())
        .addColumn('disk_used_bytes', 'bigint', (c) => c.notNull())
        .addColumn('disk_total_bytes', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('sandbox_metrics_pk', ['sandbox_id', 'tier', 'time'])
        .execute();
    },
  },
  '0004_sandbox_lifecycle': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .alterTable('sandboxes')
        // What the inactivity timeout does: the agent pauses; `kill` makes the reconciler destroy.
        .addColumn('on_timeout', 'text', (c) =>
          c
            .notNull()
            .defaultTo('pause')
            .check(sql`on_timeout in ('pause', 'kill')`),
        )
        // Proxy traffic to a paused sandbox resumes it.
        .addColumn('auto_resume', 'boolean', (c) => c.notNull().defaultTo(false))
        .execute();
    },
  },
  '0005_fleet': {
    async up(db: Kysely<unknown>) {
      // The cluster's CA and host-token signing key (docs/fleet.md): made by the first server, shared
      // by every replica. `value` is JSON (PEMs).
      await db.schema
        .createTable('cluster_keys')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .alterTable('teams')
        .addColumn('is_byoc', 'boolean', (c) => c.notNull().defaultTo(false))
        .execute();
      await db.schema
        .createTable('hosts')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('platform', 'byoc')`))
        .addColumn('team_id', 'uuid', (c) => c.references('teams.id').onDelete('cascade'))
        .addColumn('status', 'text', (c) =>
          c.notNull().check(sql`status in ('pending', 'online', 'unreachable', 'deleted')`),
        )
        // The host a server was configured with (WRENN_AGENT_URL): plain h2c, no heartbeats.
        .addColumn('is_static', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('address', 'text')
        .addColumn('arch', 'text')
        .addColumn('agent_version', 'text')
        .addColumn('cpu_cores', 'integer')
        .addColumn('memory_mb', 'integer')
        .addColumn('disk_mb', 'integer')
        .addColumn('public_key', 'text')
        .addColumn('load', 'jsonb')
        .addColumn('running_count', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('paused_count', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('last_heartbeat_at', 'timestamptz')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('registered_at', 'timestamptz')
        .execute();
      await sql`create unique index hosts_static_address on hosts (address) where is_static`.execute(db);
      await db.schema
        .createTable('host_registration_tokens')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('host_id', 'uuid', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('used_at', 'timestamptz')
        .execute();
      await db.schema
        .createTable('host_refresh_tokens')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('host_id', 'uuid', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
        // Every token descended from one registration; a reused one revokes them all.
        .addColumn('family', 'uuid', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('status', 'text', (c) =>
          c.notNull().check(sql`status in ('active', 'rotated', 'revoked')`),
        )
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createIndex('host_refresh_tokens_family')
        .on('host_refresh_tokens')
        .column('family')
        .execute();
      await db.schema
        .alterTable('sandboxes')
        .addColumn('host_id', 'uuid', (c) => c.references('hosts.id'))
        .execute();
      await db.schema
        .createIndex('sandboxes_host_idx')
        .on('sandboxes')
        .columns(['host_id', 'status'])
        .execute();
    },
  },
  '0006_one_static_host': {
    async up(db: Kysely<unknown>) {
      // One static host per cluster (WRENN_AGENT_URL), whatever its URL: an agent that comes back on
      // another port (wrenn up) is the same host, holding the same sandboxes. Earlier rows (one per
      // URL) fold into the newest.
      await sql`drop index if exists hosts_static_address`.execute(db);
      await sql`
        update sandboxes set host_id = (select id from hosts where is_static order by created_at desc limit 1)
        where host_id in (select id from hosts where is_static)`.execute(db);
      await sql`
        update hosts set is_static = false, status = 'deleted'
        where is_static and id <> (select id from hosts where is_static order by created_at desc limit 1)`.execute(
        db,
      );
      await sql`create unique index hosts_one_static on hosts (is_static) where is_static`.execute(db);
    },
  },
  '0007_artifacts_travel': {
    async up(db: Kysely<unknown>) {
      // The hosts that hold a template's files; a sandbox from it goes to one, or the files go first.
      await db.schema
        .createTable('template_replicas')
        .addColumn('template_id', 'uuid', (c) => c.notNull().references('templates.id').onDelete('cascade'))
        .addColumn('host_id', 'uuid', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('template_replicas_pk', ['template_id', 'host_id'])
        .execute();
      await sql`
        insert into template_replicas (template_id, host_id)
        select t.id, s.host_id from templates t join sandboxes s on s.id = t.source_sandbox_id
        where s.host_id is not null`.execute(db);
      // Deletes a host could not be told about (it was down): done when it next reports in.
      await db.schema
        .createTable('host_cleanups')
        .addColumn('host_id', 'uuid', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('template')`))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('host_cleanups_pk', ['host_id', 'kind', 'name'])
        .execute();
      // A paused sandbox on its way to another host: both hosts' heartbeats leave it alone.
      await db.schema
        .alterTable('sandboxes')
        .addColumn('moving_to', 'uuid', (c) => c.references('hosts.id').onDelete('set null'))
        .addColumn('moving_since', 'timestamptz')
        .execute();
      await db.schema
        .alterTable('hosts')
        .addColumn('draining', 'boolean', (c) => c.notNull().defaultTo(false))
        .execute();
    },
  },
  '0008_fleet_indexes': {
    async up(db: Kysely<unknown>) {
      // A heartbeat asks for `host_id = $1 or moving_to = $1`: without this, every heartbeat reads
      // every sandbox row of the cluster (bench:fleet, docs/performance.md).
      await sql`create index sandboxes_moving_to on sandboxes (moving_to) where moving_to is not null`.execute(
        db,
      );
      // Placement sums what the live sandboxes of each eligible host ask; stopped rows (most of the
      // table, in time) stay out of the index, and the sums come from it alone.
      await sql`
        create index sandboxes_live_by_host on sandboxes (host_id) include (status, vcpus, memory_mb, disk_mb)
        where status in ('pending', 'running', 'paused')`.execute(db);
    },
  },
  '0009_paused_replicas': {
    async up(db: Kysely<unknown>) {
      // A copy of a paused sandbox on a second host: resumable there when its own host is lost.
      await db.schema
        .alterTable('sandboxes')
        .addColumn('replica_host_id', 'uuid', (c) => c.references('hosts.id').onDelete('set null'))
        .addColumn('replica_at', 'timestamptz')
        .execute();
      // Heartbeats ask for `… or replica_host_id = $1` too.
      await sql`create index sandboxes_replica_host on sandboxes (replica_host_id) where replica_host_id is not null`.execute(
        db,
      );
    },
  },
  '0010_warm_pools': {
    async up(db: Kysely<unknown>) {
      // Warm pools the control plane keeps on its hosts; a team snapshot's goes when it is deleted.
      await db.schema
        .createTable('warm_pools')
        .addColumn('template', 'text', (c) => c.primaryKey())
        .addColumn('template_id', 'uuid', (c) => c.references('templates.id').onDelete('cascade'))
        .addColumn('size', 'integer', (c) => c.notNull().check(sql`size between 0 and 64`))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .alterTable('hosts')
        .addColumn('warm_pools', 'jsonb')
        .addColumn('warm_pools_at', 'timestamptz')
        .execute();
    },
  },
  '0011_template_builds': {
    async up(db: Kysely<unknown>) {
      // Built templates: a named template (`origin` template) points at the artifact of its latest
      // ready build; each ready build and each cache layer is an artifact row (`origin` artifact),
      // with files on hosts like a snapshot's, never named by teams directly.
      await db.schema
        .alterTable('templates')
        .addColumn('origin', 'text', (c) =>
          c
            .notNull()
            .defaultTo('snapshot')
            .check(sql`origin in ('snapshot', 'template', 'artifact')`),
        )
        .addColumn('artifact_id', 'uuid', (c) => c.references('templates.id').onDelete('set null'))
        .addColumn('base_artifact_id', 'uuid', (c) => c.references('templates.id').onDelete('set null'))
        // What a build's ENV, WORKDIR and USER left: sandboxes from the artifact get its env.
        .addColumn('defaults', 'jsonb')
        .execute();
      // Platform names are unique too (NULL team ids are distinct to the table's constraint).
      await sql`create unique index templates_platform_name on templates (name) where team_id is null`.execute(
        db,
      );
      await db.schema
        .createTable('template_builds')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('template_id', 'uuid', (c) => c.notNull().references('templates.id').onDelete('cascade'))
        .addColumn('team_id', 'uuid', (c) => c.references('teams.id').onDelete('cascade'))
        .addColumn('status', 'text', (c) =>
          c.notNull().check(sql`status in ('waiting', 'building', 'ready', 'error', 'cancelled')`),
        )
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('snapshot', 'image')`))
        .addColumn('spec', 'jsonb', (c) => c.notNull())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mb', 'integer', (c) => c.notNull())
        .addColumn('disk_mb', 'integer', (c) => c.notNull())
        .addColumn('tags', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
        .addColumn('skip_cache', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('step_count', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('steps_done', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cached_steps', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('current_step', 'text')
        .addColumn('reason', 'jsonb')
        .addColumn('host_id', 'uuid', (c) => c.references('hosts.id').onDelete('set null'))
        .addColumn('sandbox_id', 'text')
        .addColumn('artifact_id', 'uuid', (c) => c.references('templates.id').onDelete('set null'))
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cancel_requested', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('created_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('started_at', 'timestamptz')
        .addColumn('finished_at', 'timestamptz')
        .execute();
      await sql`create index template_builds_by_template on template_builds (template_id, created_at)`.execute(
        db,
      );
      await sql`create index template_builds_by_team on template_builds (team_id, created_at)`.execute(db);
      await db.schema
        .createTable('template_build_logs')
        .addColumn('seq', 'bigserial', (c) => c.primaryKey())
        .addColumn('build_id', 'uuid', (c) =>
          c.notNull().references('template_builds.id').onDelete('cascade'),
        )
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('level', 'text', (c) =>
          c.notNull().check(sql`level in ('debug', 'info', 'warn', 'error')`),
        )
        .addColumn('step', 'text')
        .addColumn('message', 'text', (c) => c.notNull())
        .execute();
      await sql`create index template_build_logs_by_build on template_build_logs (build_id, seq)`.execute(db);
      await db.schema
        .createTable('template_tags')
        .addColumn('template_id', 'uuid', (c) => c.notNull().references('templates.id').onDelete('cascade'))
        .addColumn('tag', 'text', (c) => c.notNull())
        .addColumn('build_id', 'uuid', (c) =>
          c.notNull().references('template_builds.id').onDelete('cascade'),
        )
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('template_tags_pk', ['template_id', 'tag'])
        .execute();
      // A cache layer: the state after a prefix of a build's steps, keyed by everything that made it.
      await db.schema
        .createTable('build_cache')
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('artifact_id', 'uuid', (c) => c.notNull().references('templates.id').onDelete('cascade'))
        .addColumn('state', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('used_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('build_cache_pk', ['scope', 'key'])
        .execute();
      // A build's sandbox is the build's: not listed, not counted as a team's own.
      await db.schema.alterTable('sandboxes').addColumn('build_id', 'uuid').execute();
    },
  },
  // Who did what (services/audit.ts), invitations to sign up, and the auth routes' rate-limit
  // counters (shared by every server on the database; the table is rate-limiter-flexible's own).
  '0012_audit_log': {
    async up(db: Kysely<unknown>) {
      // No foreign keys on the actors and the team: the record outlives a deleted user, key or team.
      await db.schema
        .createTable('audit_log')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('actor_user_id', 'uuid')
        .addColumn('actor_api_key_id', 'uuid')
        .addColumn('team_id', 'uuid')
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text')
        .addColumn('result', 'text', (c) => c.notNull().check(sql`result in ('ok', 'denied', 'failed')`))
        .addColumn('request_id', 'text')
        .addColumn('ip', 'text')
        .addColumn('details', 'jsonb')
        .execute();
      await sql`create index audit_log_by_team on audit_log (team_id, id)`.execute(db);
      await sql`create index audit_log_by_time on audit_log (at)`.execute(db);
      await db.schema
        .createTable('invites')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('email', 'text')
        .addColumn('created_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('used_at', 'timestamptz')
        .addColumn('used_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
        .execute();
      await db.schema
        .createTable('auth_rate_limits')
        .addColumn('key', 'varchar(255)', (c) => c.primaryKey())
        .addColumn('points', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('expire', 'bigint')
        .execute();
    },
  },
  '0013_network_policy': {
    // A sandbox's egress policy as its owner gave it (null: none), sent to its agent on create,
    // resume and update; and whether its traffic through the proxy needs its traffic token.
    async up(db) {
      await db.schema.alterTable('sandboxes').addColumn('network', 'jsonb').execute();
      await db.schema
        .alterTable('sandboxes')
        .addColumn('allow_public_traffic', 'boolean', (c) => c.notNull().defaultTo(true))
        .execute();
    },
  },
  '0014_memory_events': {
    // Processes the agent killed because the sandbox went past its memory (it lived on), as its
    // agent reports them: how many, and the last one ({at, pid, command, memory_bytes}).
    async up(db) {
      await db.schema
        .alterTable('sandboxes')
        .addColumn('oom_kills', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.alterTable('sandboxes').addColumn('last_oom_kill', 'jsonb').execute();
    },
  },
  '0015_sandbox_times_in_milliseconds': {
    // A JavaScript Date holds milliseconds and PostgreSQL microseconds, so a time read back never
    // equalled the stored one: the reconciler's "unchanged since I read it" update never matched a
    // row whose time came from now() (a create's pending row stayed pending), and a list cursor
    // (created_at, id) repeated or skipped rows. Stored as milliseconds, both sides agree.
    async up(db) {
      await db.schema
        .alterTable('sandboxes')
        .alterColumn('created_at', (c) => c.setDataType(sql`timestamptz(3)`))
        .alterColumn('updated_at', (c) => c.setDataType(sql`timestamptz(3)`))
        .execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(migrations),
};
