import { sql } from 'kysely';
import { CompiledQuery } from 'kysely';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Db } from '../db/database.js';
import { rateLimited } from '../http/errors.js';

/** `points` attempts per `durationSec` (a fixed window, starting at the first attempt). */
export interface Limit {
  points: number;
  durationSec: number;
}

/** The auth routes' limits: per client address and per account (email, or invite). */
export interface AuthLimits {
  signupPerIp: Limit;
  signupPerEmail: Limit;
  /** Every login attempt from one address. */
  loginPerIp: Limit;
  /** Failed logins for one email (a right password clears them). */
  loginFailuresPerEmail: Limit;
  /** Signups with an invite from one address, whether the invite is good or not. */
  invitePerIp: Limit;
  /** Attempts to redeem one invite. */
  invitePerToken: Limit;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = {
  signupPerIp: { points: 20, durationSec: 3600 },
  signupPerEmail: { points: 5, durationSec: 3600 },
  loginPerIp: { points: 100, durationSec: 900 },
  loginFailuresPerEmail: { points: 10, durationSec: 900 },
  invitePerIp: { points: 20, durationSec: 3600 },
  invitePerToken: { points: 5, durationSec: 3600 },
};

export type LimitName = keyof AuthLimits;

const TABLE = 'auth_rate_limits';

/**
 * rate-limiter-flexible's Postgres store asks only for an object with `query({ text, values })`
 * answering `{ rows, rowCount }`: this one runs its statements through Kysely, so the same limiter
 * works on PostgreSQL and on PGlite, in the pool the server already has. `expire` (bigint) comes
 * back as a string from `pg` and as a bigint or number from PGlite: made a number here, which is
 * what the library computes with.
 */
function kyselyStoreClient(db: Db) {
  return {
    async query(q: { text: string; values?: unknown[] }) {
      const result = await db.executeQuery<Record<string, unknown>>(
        CompiledQuery.raw(q.text, q.values ?? []),
      );
      const rows = result.rows.map((row) =>
        'expire' in row ? { ...row, expire: row.expire === null ? null : Number(row.expire) } : row,
      );
      return { rows, rowCount: Number(result.numAffectedRows ?? rows.length) };
    },
  };
}

/**
 * The auth routes' rate limits, counted in the database (table `auth_rate_limits`, made by the
 * migrations) so that every server replica on it shares them and a restart forgets nothing.
 */
export class AuthRateLimits {
  private readonly limiters: Record<LimitName, RateLimiterPostgres>;

  constructor(
    private readonly db: Db,
    limits: AuthLimits = DEFAULT_AUTH_LIMITS,
  ) {
    const storeClient = kyselyStoreClient(db);
    const make = (name: LimitName) =>
      new RateLimiterPostgres({
        storeClient,
        storeType: 'client',
        tableName: TABLE,
        tableCreated: true,
        // Expired rows are deleted by the leader's pass (pruneRateLimits), not by a timer per limiter.
        clearExpiredByTimeout: false,
        keyPrefix: name,
        points: limits[name].points,
        duration: limits[name].durationSec,
      });
    this.limiters = {
      signupPerIp: make('signupPerIp'),
      signupPerEmail: make('signupPerEmail'),
      loginPerIp: make('loginPerIp'),
      loginFailuresPerEmail: make('loginFailuresPerEmail'),
      invitePerIp: make('invitePerIp'),
      invitePerToken: make('invitePerToken'),
    };
  }

  /**
   * Counts one attempt under `name` for `key`; over the limit it throws 429 with `Retry-After` (the
   * whole seconds until the window ends), saying `what` was limited. A missing key (a request with
   * no known address) is not counted.
   */
  async take(name: LimitName, key: string | undefined, what: string): Promise<void> {
    if (!key) return;
    try {
      await this.limiters[name].consume(key);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      const retryAfterSec = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
      throw rateLimited(`too many ${what}; try again in ${retryAfterSec} s`, retryAfterSec);
    }
  }

  /** Forgets `key`'s count under `name` (a right password clears its email's failures). */
  async clear(name: LimitName, key: string): Promise<void> {
    await this.limiters[name].delete(key);
  }
}

/** Deletes counters whose window ended (the leader's periodic pass). */
export async function pruneRateLimits(db: Db, now = Date.now()): Promise<number> {
  const result = await sql`delete from auth_rate_limits where expire < ${now}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
