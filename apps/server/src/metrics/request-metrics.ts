import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { statusClass } from '@wrenn/core/metrics';
import type { ServerMetrics } from './server-metrics.js';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * The sandbox operations among the routes, by `METHOD pattern`, both APIs: their calls are also
 * timed as operations (`wrenn_sandbox_operation_duration_seconds`).
 */
const OPERATIONS: Readonly<Record<string, string>> = {
  'POST /v1/sandboxes': 'create',
  'POST /sandboxes': 'create',
  'POST /v2/sandboxes': 'create',
  'DELETE /v1/sandboxes/:id': 'kill',
  'DELETE /sandboxes/:id': 'kill',
  'POST /v1/sandboxes/:id/pause': 'pause',
  'POST /sandboxes/:id/pause': 'pause',
  'POST /v1/sandboxes/:id/resume': 'resume',
  'POST /sandboxes/:id/resume': 'resume',
  'POST /sandboxes/:id/connect': 'connect',
  'POST /v2/sandboxes/:id/connect': 'connect',
  'POST /v1/snapshots': 'snapshot',
  'POST /sandboxes/:id/snapshots': 'snapshot',
  'POST /sandboxes/:id/fork': 'fork',
};

// The route a request was served by in an app mounted by `fetch` (E2B's), for the outer app's timer,
// which sees only its own routes. Keyed by the Request, which the mount passes on as it is.
const mountedRoutes = new WeakMap<Request, string>();

/**
 * The route pattern that serves the request (`/v1/sandboxes/:id`), never the path: one label value
 * per route whatever clients send. Wildcard middleware does not count; nothing else: `unmatched`.
 * Matching happens before any handler runs, so a request refused by an auth middleware still has
 * the route it was for.
 */
function routeOf(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const { path } = routes[i]!;
    if (path !== '*' && path !== '/*') return path;
  }
  return 'unmatched';
}

/** For an app mounted inside another by `fetch`: tells the outer timer which route answered. */
export const noteMountedRoute: MiddlewareHandler = async (c, next) => {
  await next();
  mountedRoutes.set(c.req.raw, routeOf(c));
};

/** Times every request of the app it is the first middleware of (until its answer begins). */
export function measureRequests(metrics: ServerMetrics): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const method = METHODS.has(c.req.method) ? c.req.method : 'other';
    const route = mountedRoutes.get(c.req.raw) ?? routeOf(c);
    const status = statusClass(c.res.status);
    metrics.observeRequest(method, route, status, seconds);
    const operation = OPERATIONS[`${method} ${route}`];
    if (operation) metrics.observeOperation(operation, status === '2xx' ? 'ok' : status, seconds);
  };
}
