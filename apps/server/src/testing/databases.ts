import { randomBytes } from 'node:crypto';
import pg from 'pg';

// The tests run on both backends: embedded PGlite, and a real PostgreSQL server (TEST_DATABASE_URL,
// default the local one). Each run gets a fresh database on the server, dropped afterwards.
const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestPostgres {
  url: string;
  drop(): Promise<void>;
}

/** A fresh database on the PostgreSQL server, or undefined (with the reason) when none is reachable. */
export async function createTestPostgres(): Promise<TestPostgres | { unavailable: string }> {
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    return { unavailable: `no PostgreSQL at ${ADMIN_URL}: ${(err as Error).message}` };
  }
  const name = `wrenn_test_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Where PostgreSQL is missing: fail under CI (nothing may be skipped there), skip loudly elsewhere. */
export function postgresMissing(reason: string): boolean {
  if (process.env.CI === 'true') throw new Error(`PostgreSQL is required under CI: ${reason}`);
  console.warn(`\n!!! SKIPPING the PostgreSQL half of the server tests: ${reason}\n`);
  return true;
}
