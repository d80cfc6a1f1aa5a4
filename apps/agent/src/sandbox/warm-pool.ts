import { randomBytes } from 'node:crypto';
import { errorMessage, type Logger } from '@wrenn/core';
import type { SandboxRecord } from './record.js';

/**
 * Warm pools (issue 13, docs/warm-pool.md): per template, sandboxes booted ahead of time and kept
 * running, invisible (not in the registry: no listing, heartbeat, TTL, metrics or watchdog), until a
 * `CreateSandbox` of that template claims one. This class is the bookkeeping: sizes, members, counts,
 * and the background refill (one at a time, never while a create or resume waits for the CPU, with
 * back-off after failures). Making, destroying and claiming a member is the lifecycle's (create.ts).
 */

/** The runtime and directory name of a pooled sandbox: `pool-` + 16 hex digits, never a sandbox id. */
export function poolRuntimeId(): string {
  return `pool-${randomBytes(8).toString('hex')}`;
}

export function isPoolRuntimeId(name: string): boolean {
  return /^pool-[0-9a-f]{16}$/.test(name);
}

export interface PoolSizes {
  vcpus: number;
  memoryMb: number;
  diskMb: number;
}

/** What the lifecycle does for the pool. */
export interface PoolMembers {
  /** A new running sandbox of `template`, not registered; `signal` cuts it short (nothing stays). */
  make(template: string, signal: AbortSignal): Promise<{ record: SandboxRecord; sizes: PoolSizes }>;
  /** Frees everything the member holds. */
  destroy(record: SandboxRecord): Promise<void>;
  /** Whether its runtime process still runs. */
  alive(record: SandboxRecord): boolean;
}

export interface WarmPoolInfo {
  template: string;
  /** How many ready sandboxes the pool keeps. */
  size: number;
  ready: number;
  /** Creates served from the pool. */
  claims: number;
  /** Creates of the template that the pool could not serve (empty, or other sizes). */
  misses: number;
  /** Members made. */
  refills: number;
  /** Refills (or claims) that failed in a row; reset by a successful refill. */
  failures: number;
  lastError: string;
  lastErrorAt: Date | undefined;
  /** The sizes of its members; zero until the first one is made. */
  sizes: PoolSizes | undefined;
}

interface Pool {
  template: string;
  size: number;
  ready: SandboxRecord[];
  sizes?: PoolSizes;
  claims: number;
  misses: number;
  refills: number;
  failures: number;
  lastError: string;
  lastErrorAt?: Date;
  /** No refill before this (ms since the epoch): back-off after failures. */
  retryAt: number;
}

export interface WarmPoolOptions {
  /** Sandboxes this host may still start (its maximum minus registered sandboxes and pool members). */
  room: () => number;
  logger: Logger;
  /** No refill starts until this long after the last create, claim or resume began. */
  quietMs?: number;
  now?: () => number;
}

/** Back-off after `failures` failures in a row: 1 s, 2 s, 4 s … at most 60 s. */
export function backoffMs(failures: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, failures - 1));
}

export class WarmPool {
  private readonly pools = new Map<string, Pool>();
  private refilling?: { template: string; abort: AbortController; done: Promise<void> };
  private waiting = 0;
  private lastDemandAt = -Infinity;
  private stopped = false;
  private readonly now: () => number;
  /** See `WarmPoolOptions.quietMs` (tests set 0). */
  quietMs: number;

  constructor(
    private readonly members: PoolMembers,
    private readonly opts: WarmPoolOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.quietMs = opts.quietMs ?? 500;
  }

  /**
   * Sets how many ready sandboxes `template` keeps. Shrinking destroys the surplus (and a refill of
   * that template in flight) before it resolves; growing leaves the work to the refill loop.
   */
  async setSize(template: string, size: number): Promise<WarmPoolInfo> {
    const pool = this.pool(template);
    pool.size = size;
    // A new size is a new chance: a template that failed before may work now.
    pool.retryAt = 0;
    const surplus = pool.ready.splice(size);
    const waits: Promise<unknown>[] = surplus.map((r) => this.destroyMember(pool, r));
    if (this.refilling?.template === template && pool.ready.length >= size) waits.push(this.abortRefill());
    await Promise.all(waits);
    this.opts.logger.info({ template, size, ready: pool.ready.length }, 'warm pool size set');
    return this.info(pool);
  }

  /** The template's pool goes (its template is being deleted): members destroyed, counts forgotten. */
  async forget(template: string): Promise<void> {
    const pool = this.pools.get(template);
    if (!pool) return;
    this.pools.delete(template);
    const waits: Promise<unknown>[] = pool.ready.splice(0).map((r) => this.destroyMember(pool, r));
    if (this.refilling?.template === template) waits.push(this.abortRefill());
    await Promise.all(waits);
    this.opts.logger.info({ template }, 'warm pool removed with its template');
  }

  list(): WarmPoolInfo[] {
    return [...this.pools.values()]
      .map((p) => this.info(p))
      .sort((a, b) => a.template.localeCompare(b.template));
  }

  /** Ready members plus the one being made: what the pools hold of the host. */
  get held(): number {
    let n = this.refilling ? 1 : 0;
    for (const pool of this.pools.values()) n += pool.ready.length;
    return n;
  }

  /**
   * A ready member of `template` with exactly `sizes`, taken out of the pool (synchronously, so two
   * creates never get the same one), or undefined (a miss, counted when the template has a pool).
   */
  take(template: string, sizes: PoolSizes): SandboxRecord | undefined {
    this.lastDemandAt = this.now();
    const pool = this.pools.get(template);
    if (!pool || pool.size === 0) return undefined;
    if (pool.sizes && sameSizes(pool.sizes, sizes)) {
      while (pool.ready.length) {
        const record = pool.ready.shift()!;
        if (this.members.alive(record)) {
          pool.claims++;
          return record;
        }
        this.failed(pool, new Error('a pooled sandbox had died before it was claimed'));
        void this.destroyMember(pool, record);
      }
    }
    pool.misses++;
    this.opts.logger.info(
      {
        template,
        ready: pool.ready.length,
        why: pool.ready.length && pool.sizes ? 'other sizes' : 'empty',
        asked: sizes,
        pooled: pool.sizes,
      },
      'warm pool miss',
    );
    return undefined;
  }

  /** A claimed member that could not be given its identity: counted, and the caller boots instead. */
  claimFailed(template: string, err: unknown): void {
    const pool = this.pools.get(template);
    if (!pool) return;
    pool.claims--;
    pool.misses++;
    this.failed(pool, err);
  }

  /** A create or resume waits, or one ended less than `quietMs` ago: background work waits too. */
  get busy(): boolean {
    return this.waiting > 0 || this.now() - this.lastDemandAt < this.quietMs;
  }

  /**
   * A create (cold) or resume needs the CPU: a refill in flight is cut short, and none starts until
   * `done` is called (and `quietMs` later).
   */
  demand(): () => void {
    this.waiting++;
    this.lastDemandAt = this.now();
    if (this.refilling) void this.abortRefill();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.waiting--;
      this.lastDemandAt = this.now();
    };
  }

  /** Room for a sandbox that needs a slot now: a ready member (of the fullest pool) is destroyed. */
  async evictOne(): Promise<boolean> {
    const fullest = [...this.pools.values()]
      .filter((p) => p.ready.length)
      .sort((a, b) => b.ready.length - a.ready.length)[0];
    const record = fullest?.ready.pop();
    if (fullest && record) {
      await this.destroyMember(fullest, record);
      return true;
    }
    if (this.refilling) {
      await this.abortRefill();
      return true;
    }
    return false;
  }

  /**
   * One refill, if one is due: the pool furthest below its size whose back-off has passed, while no
   * create or resume waits and the host has room. Resolves when the member is ready (or failed).
   */
  async refillOnce(): Promise<void> {
    if (this.stopped || this.refilling || this.busy) return;
    if (this.opts.room() <= 0) return;
    const now = this.now();
    const pool = [...this.pools.values()]
      .filter((p) => p.ready.length < p.size && p.retryAt <= now)
      .sort((a, b) => b.size - b.ready.length - (a.size - a.ready.length))[0];
    if (!pool) return;
    const abort = new AbortController();
    const done = this.refill(pool, abort.signal);
    this.refilling = { template: pool.template, abort, done };
    try {
      await done;
    } finally {
      this.refilling = undefined;
    }
  }

  private async refill(pool: Pool, signal: AbortSignal): Promise<void> {
    const { logger } = this.opts;
    let made: { record: SandboxRecord; sizes: PoolSizes };
    try {
      made = await this.members.make(pool.template, signal);
    } catch (err) {
      // Cut short for a create, a resize or shutdown: not the template's fault.
      if (signal.aborted) return;
      this.failed(pool, err);
      logger.warn(
        { template: pool.template, err: errorMessage(err), retryInMs: pool.retryAt - this.now() },
        'warm pool refill failed',
      );
      return;
    }
    const wanted = !this.stopped && this.pools.get(pool.template) === pool && pool.ready.length < pool.size;
    if (!wanted) {
      await this.destroyMember(pool, made.record);
      return;
    }
    pool.sizes = made.sizes;
    pool.ready.push(made.record);
    pool.refills++;
    pool.failures = 0;
    logger.info(
      {
        template: pool.template,
        ready: pool.ready.length,
        size: pool.size,
        runtimeId: made.record.runtimeId,
      },
      'warm pool refilled',
    );
  }

  /** Shutdown: no more refills; every member is destroyed. */
  async stop(): Promise<void> {
    this.stopped = true;
    const waits: Promise<unknown>[] = [this.abortRefill()];
    for (const pool of this.pools.values())
      waits.push(...pool.ready.splice(0).map((r) => this.destroyMember(pool, r)));
    await Promise.all(waits);
  }

  private async abortRefill(): Promise<void> {
    const refilling = this.refilling;
    if (!refilling) return;
    refilling.abort.abort(new Error('refill cut short'));
    await refilling.done.catch(() => undefined);
  }

  private async destroyMember(pool: Pool, record: SandboxRecord): Promise<void> {
    try {
      await this.members.destroy(record);
    } catch (err) {
      this.failed(pool, err);
      this.opts.logger.error(
        { template: pool.template, runtimeId: record.runtimeId, err: errorMessage(err) },
        'could not destroy a pooled sandbox',
      );
    }
  }

  private failed(pool: Pool, err: unknown): void {
    pool.failures++;
    pool.lastError = errorMessage(err);
    pool.lastErrorAt = new Date(this.now());
    pool.retryAt = this.now() + backoffMs(pool.failures);
  }

  private pool(template: string): Pool {
    let pool = this.pools.get(template);
    if (!pool) {
      pool = {
        template,
        size: 0,
        ready: [],
        claims: 0,
        misses: 0,
        refills: 0,
        failures: 0,
        lastError: '',
        retryAt: 0,
      };
      this.pools.set(template, pool);
    }
    return pool;
  }

  private info(pool: Pool): WarmPoolInfo {
    return {
      template: pool.template,
      size: pool.size,
      ready: pool.ready.length,
      claims: pool.claims,
      misses: pool.misses,
      refills: pool.refills,
      failures: pool.failures,
      lastError: pool.lastError,
      lastErrorAt: pool.lastErrorAt,
      sizes: pool.sizes && { ...pool.sizes },
    };
  }
}

function sameSizes(a: PoolSizes, b: PoolSizes): boolean {
  return a.vcpus === b.vcpus && a.memoryMb === b.memoryMb && a.diskMb === b.diskMb;
}
