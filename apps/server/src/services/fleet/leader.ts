import pg from 'pg';
import { errorMessage, type Logger } from '@wrenn/core';
import type { ServerConfig } from '../../config.js';

/** The advisory lock whose holder runs the cluster's singleton loops ("wrnn"). */
const LEADER_LOCK = 0x77726e6e;

export interface Leadership {
  /** Whether this server runs the host monitor and the reconciler now. */
  isLeader(): boolean;
  /** Gives the lock up (ends its session) and stops trying. */
  stop(): Promise<void>;
}

/**
 * Leader election for the loops that must run once per cluster: the holder of a PostgreSQL
 * advisory lock, taken on a connection of its own (never the pool's, whose sessions are shared).
 * When the leader dies, PostgreSQL ends its session and frees the lock; the others try every
 * `retryMs` and one takes over. While leading, the session is checked as often, so a leader whose
 * connection was cut stops leading. On PGlite there is one process, and it always leads.
 */
export function startLeaderElection(
  database: ServerConfig['database'],
  logger: Logger,
  opts: { retryMs?: number; onChange?: (isLeader: boolean) => void } = {},
): Leadership {
  if (database.kind === 'pglite') return { isLeader: () => true, stop: () => Promise.resolve() };
  const { url } = database;
  const retryMs = opts.retryMs ?? 3000;
  let client: pg.Client | undefined;
  let leading = false;
  let stopped = false;
  let pass: Promise<void> | undefined;

  const setLeading = (value: boolean) => {
    if (value === leading) return;
    leading = value;
    logger.info(
      { leader: value },
      value ? 'this server leads (host monitor, reconciler)' : 'this server no longer leads',
    );
    opts.onChange?.(value);
  };

  const dropClient = () => {
    const old = client;
    client = undefined;
    setLeading(false);
    old?.end().catch(() => undefined);
  };

  async function attempt(): Promise<void> {
    try {
      if (!client) {
        const fresh = new pg.Client({ connectionString: url, connectionTimeoutMillis: retryMs });
        fresh.on('error', (err) => {
          logger.warn({ err: errorMessage(err) }, 'leader election connection failed');
          if (client === fresh) dropClient();
        });
        fresh.on('end', () => {
          if (client === fresh) dropClient();
        });
        client = fresh;
        await fresh.connect();
      }
      if (leading) {
        await client.query('select 1');
        return;
      }
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [
        LEADER_LOCK,
      ]);
      if (!stopped) setLeading(rows[0]?.locked === true);
    } catch (err) {
      logger.debug({ err: errorMessage(err) }, 'leader election attempt failed');
      dropClient();
    }
  }

  const tick = () => {
    if (stopped || pass) return;
    pass = attempt().finally(() => (pass = undefined));
  };
  tick();
  const timer = setInterval(tick, retryMs);
  timer.unref();

  return {
    isLeader: () => leading,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await pass;
      const old = client;
      client = undefined;
      setLeading(false);
      await old?.end().catch(() => undefined);
    },
  };
}
