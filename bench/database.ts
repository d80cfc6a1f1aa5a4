import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The test PostgreSQL (scripts/test-postgres.sh), as the benches reach it. */
export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:54329/postgres';

/**
 * A fresh database on the test PostgreSQL, dropped by `drop` (not `@wrenn/server/testing`'s: that
 * module needs vitest).
 */
export async function createBenchDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `wrenn_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3000 });
  await admin.connect().catch((err: unknown) => {
    throw new Error(`no PostgreSQL at ${ADMIN_URL} (bash scripts/test-postgres.sh starts one)`, {
      cause: err,
    });
  });
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}
