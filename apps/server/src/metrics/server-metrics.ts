import { sql } from 'kysely';
import { errorMessage, type Logger } from '@wrenn/core';
import { Counter, Gauge, Histogram, OPERATION_BUCKETS, REQUEST_BUCKETS, Registry } from '@wrenn/core/metrics';
import type { Db } from '../db/database.js';

/** A sandbox row's host, as a label: its id, or `static` for rows of the server's static host. */
const hostLabel = (hostId: string | null) => hostId ?? 'static';

/**
 * The control plane's Prometheus metrics (docs/observability.md). Requests, sandbox operations and
 * heartbeats are counted as they happen; sandboxes, hosts, warm pools and the build queue are read
 * from the database at scrape time (a few grouped counts), so every replica reports the cluster as
 * the database has it (`wrenn_server_leader` says which replica leads).
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requestSeconds: Histogram<'method' | 'route' | 'status_class'>;
  private readonly operationSeconds: Histogram<'operation' | 'outcome'>;
  private readonly heartbeats: Counter<'host'>;

  constructor(deps: { db: Db; logger: Logger; isLeader?: () => boolean }) {
    const registers = [this.registry];
    const { logger } = deps;
    // Read when a scrape comes, not now: tests hand over a database that opens later.
    const db = () => deps.db;
    this.requestSeconds = new Histogram({
      name: 'wrenn_http_request_duration_seconds',
      help: 'API requests (both APIs) until their answer began, by route pattern and status class',
      labelNames: ['method', 'route', 'status_class'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.operationSeconds = new Histogram({
      name: 'wrenn_sandbox_operation_duration_seconds',
      help: 'API calls that create, kill, pause, resume, connect to or snapshot a sandbox (both APIs), by outcome',
      labelNames: ['operation', 'outcome'],
      buckets: OPERATION_BUCKETS,
      registers,
    });
    this.heartbeats = new Counter({
      name: 'wrenn_host_heartbeats_total',
      help: 'Heartbeats this server received and recorded, by host',
      labelNames: ['host'],
      registers,
    });
    // A failed read leaves the series out of this scrape (the log says why) instead of failing it.
    const read = async (what: string, fill: () => Promise<void>) => {
      try {
        await fill();
      } catch (err) {
        logger.warn({ metric: what, err: errorMessage(err) }, 'metrics: reading the database failed');
      }
    };
    new Gauge({
      name: 'wrenn_sandboxes',
      help: 'Sandboxes by state and host, from the database (stopped ones not counted)',
      labelNames: ['state', 'host'],
      registers,
      async collect() {
        this.reset();
        await read('wrenn_sandboxes', async () => {
          const rows = await db()
            .selectFrom('sandboxes')
            .select(['status', 'host_id', (eb) => eb.fn.countAll<string>().as('n')])
            .where('status', '!=', 'stopped')
            .groupBy(['status', 'host_id'])
            .execute();
          for (const r of rows) this.set({ state: r.status, host: hostLabel(r.host_id) }, Number(r.n));
        });
      },
    });
    new Gauge({
      name: 'wrenn_hosts',
      help: 'Hosts by status (deleted ones not counted)',
      labelNames: ['status'],
      registers,
      async collect() {
        this.reset();
        await read('wrenn_hosts', async () => {
          const rows = await db()
            .selectFrom('hosts')
            .select(['status', (eb) => eb.fn.countAll<string>().as('n')])
            .where('status', '!=', 'deleted')
            .groupBy('status')
            .execute();
          for (const r of rows) this.set({ status: r.status }, Number(r.n));
        });
      },
    });
    new Gauge({
      name: 'wrenn_host_heartbeat_age_seconds',
      help: "Seconds since each registered host's last heartbeat (hosts that never sent one left out)",
      labelNames: ['host'],
      registers,
      async collect() {
        this.reset();
        await read('wrenn_host_heartbeat_age_seconds', async () => {
          const rows = await db()
            .selectFrom('hosts')
            .select(['id', sql<string>`extract(epoch from (now() - last_heartbeat_at))`.as('age')])
            .where('status', '!=', 'deleted')
            .where('last_heartbeat_at', 'is not', null)
            .execute();
          for (const r of rows) this.set({ host: r.id }, Math.max(0, Number(r.age)));
        });
      },
    });
    const pools = async (field: 'size' | 'ready', gauge: Gauge<'host' | 'template'>) => {
      const hosts = await db()
        .selectFrom('hosts')
        .select(['id', 'warm_pools'])
        .where('status', '=', 'online')
        .where('warm_pools', 'is not', null)
        .execute();
      for (const host of hosts)
        for (const pool of host.warm_pools ?? [])
          gauge.set({ host: host.id, template: pool.template }, pool[field]);
    };
    new Gauge({
      name: 'wrenn_warm_pool_target',
      help: "Ready sandboxes each host's warm pool keeps, by host and template (as the leader last read them)",
      labelNames: ['host', 'template'],
      registers,
      async collect() {
        this.reset();
        await read('wrenn_warm_pool_target', () => pools('size', this));
      },
    });
    new Gauge({
      name: 'wrenn_warm_pool_ready',
      help: "Ready sandboxes in each host's warm pool, by host and template (as the leader last read them)",
      labelNames: ['host', 'template'],
      registers,
      async collect() {
        this.reset();
        await read('wrenn_warm_pool_ready', () => pools('ready', this));
      },
    });
    new Gauge({
      name: 'wrenn_build_queue_builds',
      help: 'Template builds waiting for a worker (queued) and running (active), cluster-wide',
      labelNames: ['state'],
      registers,
      async collect() {
        await read('wrenn_build_queue_builds', async () => {
          const rows = await db()
            .selectFrom('template_builds')
            .select(['status', (eb) => eb.fn.countAll<string>().as('n')])
            .where('status', 'in', ['waiting', 'building'])
            .groupBy('status')
            .execute();
          const count = (status: string) => Number(rows.find((r) => r.status === status)?.n ?? 0);
          this.set({ state: 'queued' }, count('waiting'));
          this.set({ state: 'active' }, count('building'));
        });
      },
    });
    const { isLeader } = deps;
    new Gauge({
      name: 'wrenn_server_leader',
      help: "1 when this server holds the cluster's leader lock (runs the reconciler and host monitor)",
      registers,
      collect() {
        this.set(isLeader?.() ? 1 : 0);
      },
    });
  }

  /** One API request answered. `route` is the route pattern (`unmatched` when none). */
  observeRequest(method: string, route: string, statusClass: string, seconds: number): void {
    this.requestSeconds.observe({ method, route, status_class: statusClass }, seconds);
  }

  /** One sandbox operation's API call answered (`outcome`: `ok` or the status class). */
  observeOperation(operation: string, outcome: string, seconds: number): void {
    this.operationSeconds.observe({ operation, outcome }, seconds);
  }

  heartbeatReceived(hostId: string): void {
    this.heartbeats.inc({ host: hostId });
  }
}
