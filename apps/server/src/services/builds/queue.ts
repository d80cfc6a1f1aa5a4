import { PgBoss, fromPglite } from 'pg-boss';
import { errorMessage, type Logger } from '@wrenn/core';
import { databaseBackend, type Db } from '../../db/database.js';
import type { BuildQueue } from './builds.js';

const QUEUE = 'template-builds';
/** Every build job is in this one group, so `groupConcurrency` caps running builds cluster-wide. */
const GROUP = { id: 'builds' };
/** A worker that stops heartbeating (its server died) has its build retried after this long. */
const HEARTBEAT_SEC = 15;
/** How often pg-boss looks for jobs whose worker stopped heartbeating (default 60 s). */
const SUPERVISE_SEC = 5;
/** Runs of one build: the first, and one retry after its server died; a third only records the error. */
export const MAX_BUILD_ATTEMPTS = 2;

export const BUILD_DEFAULTS = { workers: 2, timeoutSec: 7200 };

export interface BuildQueueOptions {
  /** Builds running at once across every server on this database (default 2). */
  workers: number;
  /** The longest a build may run, seconds. */
  timeoutSec: number;
  logger: Logger;
}

export type RunBuild = (buildId: string, signal: AbortSignal) => Promise<void>;

export interface RunningBuildQueue extends BuildQueue {
  stop(): Promise<void>;
}

/**
 * The durable build queue: pg-boss on the project's own database (PostgreSQL, or PGlite through
 * the same single connection Kysely uses, so its statements never land inside another's
 * transaction). Jobs survive restarts; a job whose server died is failed by pg-boss's heartbeat
 * monitor and retried; no job runs twice at once, on any number of servers.
 */
export async function startBuildQueue(
  db: Db,
  run: RunBuild,
  opts: BuildQueueOptions,
): Promise<RunningBuildQueue> {
  const backend = databaseBackend(db);
  const boss =
    backend.kind === 'postgres'
      ? new PgBoss({ connectionString: backend.url, max: 3, superviseIntervalSeconds: SUPERVISE_SEC })
      : new PgBoss({
          db: sharedConnection(db, fromPglite(backend.client)),
          backend: 'pglite',
          superviseIntervalSeconds: SUPERVISE_SEC,
        });
  boss.on('error', (err) => opts.logger.warn({ err: errorMessage(err) }, 'build queue'));
  await boss.start();
  await boss.createQueue(QUEUE, {
    retryLimit: MAX_BUILD_ATTEMPTS,
    retryDelay: 1,
    heartbeatSeconds: HEARTBEAT_SEC,
    expireInSeconds: opts.timeoutSec,
  });
  const running = new Map<string, AbortController>();
  await boss.work<{ buildId: string }>(
    QUEUE,
    {
      localConcurrency: opts.workers,
      groupConcurrency: opts.workers,
      pollingIntervalSeconds: 0.5,
      batchSize: 1,
    },
    async ([job]) => {
      const { buildId } = job!.data;
      const controller = new AbortController();
      running.set(buildId, controller);
      try {
        await run(buildId, controller.signal);
      } finally {
        running.delete(buildId);
      }
    },
  );
  return {
    async enqueue(buildId) {
      await boss.send(QUEUE, { buildId }, { group: GROUP });
    },
    cancelRunning(buildId) {
      running.get(buildId)?.abort(new Error('cancelled'));
    },
    async stop() {
      for (const controller of running.values()) controller.abort(new Error('the server is stopping'));
      await boss.stop({ graceful: true, timeout: 10_000 });
    },
  };
}

/** pg-boss's PGlite adapter, each statement run while holding Kysely's one connection. */
function sharedConnection(db: Db, inner: ReturnType<typeof fromPglite>): ReturnType<typeof fromPglite> {
  return {
    ...inner,
    executeSql: (text: string, values?: unknown[]) =>
      db.connection().execute(() => inner.executeSql(text, values)),
  };
}
