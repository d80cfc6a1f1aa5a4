import http from 'node:http';
import type http2 from 'node:http2';
import type { Socket } from 'node:net';
import { LRUCache } from 'lru-cache';

export type ResolveResult =
  // Sandbox running: its address (IP/host) reachable from here; with `tunnel`, on a registered
  // host, reached through its agent's HTTP/2 session (`host` is then only a name for the Host header).
  // `trafficToken`: the sandbox's traffic is private, and requests must carry this token.
  | { kind: 'target'; host: string; tunnel?: http2.ClientHttp2Session; trafficToken?: string }
  | { kind: 'gone' }; // unknown, paused without auto-resume, stopped

/** A running sandbox: where it is, and the connections kept open to it. */
export interface Target {
  host: string;
  agent: SandboxPool;
  /** Set when the sandbox's traffic is private: the token requests must carry. */
  trafficToken?: string;
}

/**
 * The kept-alive connections to one sandbox *incarnation*: one sandbox id at one address, from the
 * moment it was seen running until it is released. Network slots are reused, so a new sandbox (or
 * the same one resumed) often has the address of one just gone; a connection to the old one would
 * be reset on first use, and envd's calls carry a body, so that cannot be retried safely. A pool
 * is therefore never shared between incarnations: a retired pool closes its idle connections and
 * keeps none of the ones still in use once their request ends.
 */
export class SandboxPool extends http.Agent {
  private retired = false;
  /** The agent's HTTP/2 session the pool's connections are tunnelled over, if any. */
  readonly session?: http2.ClientHttp2Session;

  constructor(readonly host: string) {
    // Keep-alive: the SDK makes many small envd calls per operation; a fresh TCP handshake for
    // each would dominate their latency. Free sockets are unref'd by Node, so a pool never holds
    // the process open. No socket timeout: Connect server-streams and downloads may idle for minutes.
    super({ keepAlive: true });
  }

  override keepSocketAlive(socket: Socket): boolean {
    if (this.retired) return false;
    // Node's returns true (typed void): the socket goes back to the free list.
    return (super.keepSocketAlive(socket) as unknown) !== false;
  }

  protected get isRetired(): boolean {
    return this.retired;
  }

  retire(): void {
    this.retired = true;
    for (const sockets of Object.values(this.freeSockets))
      for (const socket of sockets ?? []) socket.destroy();
  }
}

export interface TargetCacheOptions {
  /** How long a resolved address is reused (ms). */
  cacheMs: number;
  /** A pool for a sandbox reached through its agent (see `TunnelPool`). */
  tunnelPool?: (host: string, session: http2.ClientHttp2Session, sandboxId: string) => SandboxPool;
  /** Most sandboxes remembered at once (addresses and pools each); the least recently used go first. */
  max?: number;
}

/**
 * Where each sandbox is, looked up through `resolve` at most once per `cacheMs` (concurrent
 * requests share one lookup, and so one auto-resume), and the connection pool of its current
 * incarnation. "Gone" is never remembered: right after a create or resume the SDK talks to envd at
 * once, and a remembered "not found" would fail that call. An answer is used only within `cacheMs`
 * of when it came; one past half that age is looked up again behind the requests that use it, so
 * steady traffic never waits for a lookup (a row read and an agent call each).
 */
export class TargetCache {
  private readonly lookups: LRUCache<string, Promise<ResolveResult>>;
  private readonly pools: LRUCache<string, SandboxPool>;
  /** Sandboxes whose answer is being looked up again while the current one is still used. */
  private readonly refreshing = new Set<string>();

  constructor(
    private readonly resolve: (sandboxId: string) => Promise<ResolveResult>,
    private readonly options: TargetCacheOptions,
  ) {
    const max = options.max ?? 4096;
    this.lookups = new LRUCache({ max });
    // Evicted, replaced or deleted: its idle connections go with it.
    this.pools = new LRUCache({ max, dispose: (pool) => pool.retire() });
  }

  /** The sandbox's address and connection pool, or undefined when it is gone. Rejects when `resolve` does. */
  async target(sandboxId: string): Promise<Target | undefined> {
    const result = await this.lookup(sandboxId);
    if (result.kind === 'gone') {
      this.pools.delete(sandboxId);
      return undefined;
    }
    let pool = this.pools.get(sandboxId);
    if (pool?.host !== result.host || pool.session !== result.tunnel) {
      // At another address or host: resumed or restored elsewhere, a new incarnation.
      const { tunnel } = result;
      if (tunnel && !this.options.tunnelPool)
        throw new Error('no tunnel pool for a sandbox on a registered host');
      pool = tunnel ? this.options.tunnelPool!(result.host, tunnel, sandboxId) : new SandboxPool(result.host);
      this.pools.set(sandboxId, pool);
    }
    return { host: result.host, agent: pool, trafficToken: result.trafficToken };
  }

  /**
   * The sandbox's incarnation ended (destroyed, paused, resumed, snapshotted), or a connection to it
   * failed before any answer (its address may be stale): look it up again next time, over new
   * connections. Requests in flight keep theirs.
   */
  release(sandboxId: string): void {
    this.lookups.delete(sandboxId);
    this.pools.delete(sandboxId);
  }

  private lookup(sandboxId: string): Promise<ResolveResult> {
    const cached = this.lookups.get(sandboxId);
    if (cached) {
      // A lookup in flight has no TTL (Infinity here), so only an answer is ever refreshed.
      if (this.lookups.getRemainingTTL(sandboxId) < this.options.cacheMs / 2) this.refresh(sandboxId, cached);
      return cached;
    }
    const result = this.resolve(sandboxId);
    // No TTL while resolving, so concurrent requests share it; the clock starts once it answers.
    this.lookups.set(sandboxId, result, { ttl: 0 });
    const current = () => this.lookups.peek(sandboxId, { allowStale: true }) === result;
    result.then(
      (r) => {
        if (!current()) return;
        if (r.kind === 'target') this.lookups.set(sandboxId, result, { ttl: this.options.cacheMs });
        else this.lookups.delete(sandboxId);
      },
      () => {
        if (current()) this.lookups.delete(sandboxId);
      },
    );
    return result;
  }

  /** Looks `sandboxId` up again; the answer replaces `cached` if nothing else did meanwhile. */
  private refresh(sandboxId: string, cached: Promise<ResolveResult>): void {
    if (this.refreshing.has(sandboxId)) return;
    this.refreshing.add(sandboxId);
    const next = this.resolve(sandboxId);
    // Released (a pause, a failed connection) or looked up anew after it ran out: that stands.
    const current = () => this.lookups.peek(sandboxId, { allowStale: true }) === cached;
    next
      .then(
        (r) => {
          if (!current()) return;
          if (r.kind === 'target') this.lookups.set(sandboxId, next, { ttl: this.options.cacheMs });
          else this.lookups.delete(sandboxId);
        },
        // The answer in hand runs out as it would have; the request after it looks up itself.
        () => undefined,
      )
      .finally(() => this.refreshing.delete(sandboxId));
  }
}
