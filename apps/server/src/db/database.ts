import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { errorMessage, type Logger } from '@wrenn/core';
import type { ServerConfig } from '../config.js';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

/** What a database is underneath, for libraries that need their own access (the build queue). */
export type DatabaseBackend = { kind: 'postgres'; url: string } | { kind: 'pglite'; client: PGlite };

const backends = new WeakMap<Db, DatabaseBackend>();

export function databaseBackend(db: Db): DatabaseBackend {
  const backend = backends.get(db);
  if (!backend) throw new Error('databaseBackend: not a database openDatabase opened');
  return backend;
}

/**
 * Opens the database (PostgreSQL, or PGlite in the data dir; `memory://` for tests) and brings its
 * schema up to date. Both backends run the same migrations and the same queries.
 */
export async function openDatabase(
  target: ServerConfig['database'] | { kind: 'pglite'; dir: 'memory://' },
  logger: Logger,
): Promise<Db> {
  let db: Db;
  if (target.kind === 'postgres') {
    const pool = new pg.Pool({ connectionString: target.url, max: 10 });
    // An idle connection the server ends (a restart, a failover, a forced drop) is an 'error' on the
    // pool; without a listener that would be an uncaught exception that ends the process. The pool
    // drops that connection and opens another when next needed.
    pool.on('error', (err) => logger.warn({ err: errorMessage(err) }, 'an idle database connection failed'));
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    backends.set(db, { kind: 'postgres', url: target.url });
  } else {
    if (target.dir !== 'memory://') await mkdir(target.dir, { recursive: true });
    const client = new PGlite(target.dir);
    db = new Kysely<Database>({ dialect: new PGliteDialect(client) });
    backends.set(db, { kind: 'pglite', client });
  }
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  for (const r of results ?? []) logger.info({ migration: r.migrationName, status: r.status }, 'migration');
  if (error) {
    await db.destroy();
    throw new Error(`database migration failed: ${errorMessage(error)}`);
  }
  return db;
}
