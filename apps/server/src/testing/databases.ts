import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe } from 'vitest';

// The tests run on both backends: embedded PGlite, and a real PostgreSQL server (TEST_DATABASE_URL,
// which scripts/test-postgres.sh sets; default the local one). Each run gets a fresh database on the
// server, dropped afterwards.
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

/**
 * Where PostgreSQL is missing: fail under CI (nothing may be skipped there); elsewhere the caller
 * reports its tests as skipped, with the reason (`describeOnBackends`).
 */
export function postgresMissing(reason: string): void {
  if (process.env.CI === 'true') {
    throw new Error(`PostgreSQL is required under CI: ${reason} (scripts/test-postgres.sh starts one)`);
  }
  console.warn(`\n!!! SKIPPING the PostgreSQL half of the server tests: ${reason}\n`);
}

/**
 * The one backend of a test that needs a real PostgreSQL (several processes on one database): a
 * fresh database, or a skipped block naming why (a failure under CI, `postgresMissing`).
 */
export async function postgresOnly(): Promise<{ name: string; skip?: string; db?: TestPostgres }[]> {
  const target = await createTestPostgres();
  if ('unavailable' in target) {
    postgresMissing(target.unavailable);
    return [{ name: 'PostgreSQL', skip: target.unavailable }];
  }
  return [{ name: 'PostgreSQL', db: target }];
}

/**
 * One describe block per backend. A backend that is not there shows up as skipped tests with the
 * reason in their name, never as tests that silently do not exist.
 */
export function describeOnBackends<B extends { name: string; skip?: string }>(
  title: string,
  backends: readonly B[],
  fn: (backend: B) => void,
): void {
  for (const backend of backends) {
    const name = `${title} on ${backend.name}`;
    if (backend.skip) describe.skip(`${name} (skipped: ${backend.skip})`, () => fn(backend));
    else describe(name, () => fn(backend));
  }
}
