import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';
import { formatHostPort, parseHostPort } from './net-address.js';

// Prometheus exposition for the server and the agent (docs/observability.md). Imported as
// `@wrenn/core/metrics`, not from the package's index, so envd's bundle never pulls in prom-client.

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets (seconds) for API requests and RPCs: 1 ms to 2 min. */
export const REQUEST_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
];
/** Latency buckets (seconds) for sandbox operations (create, pause, resume, snapshot): 10 ms to 10 min. */
export const OPERATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

let processRegistry: Registry | undefined;

/**
 * The process's own metrics (CPU, memory, heap, event loop lag, GC, handles), made once per process:
 * their collectors watch the whole process, so several servers or an agent beside a server in one
 * process (`wrenn up`, tests) share them.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The text a scrape gets: the process's metrics, then the program's own. */
export async function exposition(registry: Registry): Promise<string> {
  const [own, proc] = await Promise.all([registry.metrics(), processMetrics().metrics()]);
  return `${proc}\n${own}`;
}

export interface MetricsListener {
  /** http://host:port/metrics */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format) on its own HTTP/1.1 listener, apart from the
 * program's API: who may reach it is decided by the address it listens on (loopback by default,
 * docs/security.md). Anything else is 404; a failed collection is 500 with the reason in the log.
 */
export async function listenMetrics(opts: {
  host: string;
  port: number;
  registry: Registry;
  logger: Logger;
}): Promise<MetricsListener> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    exposition(opts.registry).then(
      (text) => {
        res.writeHead(200, { 'content-type': opts.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        opts.logger.error({ err: errorMessage(err) }, 'metrics collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed; see the log\n');
      },
    );
  });
  // A scraper keeps its connection; it must not hold a stopping program open.
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${formatHostPort(opts.host, port)}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Where a program's `/metrics` listens; undefined: nowhere (metrics off). */
export interface MetricsAddress {
  host: string;
  port: number;
  /**
   * Set by the operator: failing to listen there fails the start. The default address (false) is a
   * convenience, and when it is taken (a second agent or server on this machine) metrics are off
   * with a warning instead.
   */
  explicit: boolean;
}

/** `listenMetrics` at `address`, or undefined when metrics are off (see `MetricsAddress.explicit`). */
export async function listenMetricsAt(
  address: MetricsAddress | undefined,
  registry: Registry,
  logger: Logger,
): Promise<MetricsListener | undefined> {
  if (!address) return undefined;
  try {
    return await listenMetrics({ ...address, registry, logger });
  } catch (err) {
    if (address.explicit || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    logger.warn(
      { address: formatHostPort(address.host, address.port) },
      'the default metrics address is taken (another Wrenn program on this machine?); /metrics is off — set its *_METRICS_LISTEN to serve it elsewhere',
    );
    return undefined;
  }
}

/**
 * Parses a `*_METRICS_LISTEN` setting: `host:port` (port 0: any free port), or `off`/empty for none.
 * `given` says whether the operator set it (else `value` is the default).
 */
export function parseMetricsAddress(value: string, given: boolean): MetricsAddress | undefined {
  if (value === '' || value === 'off') return undefined;
  return { ...parseHostPort(value, { allowZero: true }), explicit: given };
}

/** `2xx`, `4xx`, …: a status label with five values at most. */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}
