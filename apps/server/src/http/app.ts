import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { serve, type ServerType } from '@hono/node-server';
import { OpenAPIHono } from '@hono/zod-openapi';
import { WebSocketServer } from 'ws';
import { ZodError } from 'zod';
import { withLogContext } from '@wrenn/core';
import { adminRoutes } from '../routes/admin.js';
import { buildRoutes } from '../routes/builds.js';
import { buildE2bApi, isE2bApiPath } from '../e2b/api.js';
import type { SandboxProxy } from '../proxy/sandbox-proxy.js';
import { authRoutes } from '../routes/auth.js';
import { execWebSocketRoutes } from '../routes/exec-ws.js';
import { fileRoutes } from '../routes/files.js';
import { fleetMoveRoutes } from '../routes/fleet-moves.js';
import { warmPoolRoutes } from '../routes/warm-pools.js';
import { hostRoutes } from '../routes/hosts.js';
import { meRoutes } from '../routes/me.js';
import { sandboxRoutes } from '../routes/sandboxes.js';
import { snapshotRoutes } from '../routes/snapshots.js';
import { teamRoutes } from '../routes/teams.js';
import type { App, Env, ServerDeps } from './app-types.js';
import { admitRequest, TrustedProxies } from './client-address.js';
import { measureRequests } from '../metrics/request-metrics.js';
import { dashboardRoutes } from './dashboard.js';
import { docsRoutes } from './docs.js';
import { invalidInput, toApiError } from './errors.js';

export const OPENAPI_INFO = { title: 'Wrenn API', version: '0.1.0' };

/** The whole HTTP API: every route is declared with its schemas, which also make /openapi.json. */
export function buildApp(deps: ServerDeps): App {
  const app: App = new OpenAPIHono<Env>({
    // Schema failures answer 400 naming the first offending field.
    defaultHook: (result, c) => (result.success ? undefined : c.json(validationError(result.error), 400)),
  });

  // First: it times everything below, E2B's API included.
  if (deps.metrics) app.use('*', measureRequests(deps.metrics));
  // E2B's API (its own paths, error shape and docs) answers before any of ours.
  const e2bApi = buildE2bApi(deps);
  app.use('*', async (c, next) => (isE2bApiPath(c.req.path) ? e2bApi.fetch(c.req.raw, c.env) : next()));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
    type: 'apiKey',
    in: 'header',
    name: 'X-API-Key',
  });

  authRoutes(app, deps);
  meRoutes(app, deps);
  teamRoutes(app, deps);
  adminRoutes(app, deps);
  hostRoutes(app, deps);
  fleetMoveRoutes(app, deps);
  warmPoolRoutes(app, deps);
  sandboxRoutes(app, deps);
  fileRoutes(app, deps);
  execWebSocketRoutes(app, deps);
  snapshotRoutes(app, deps);
  buildRoutes(app, deps);

  const document = () => app.getOpenAPI31Document({ openapi: '3.1.0', info: OPENAPI_INFO });
  app.get('/openapi.json', (c) => c.json(document()));
  docsRoutes(app, document);
  dashboardRoutes(app, deps.dashboardDir);

  app.notFound((c) =>
    c.json({ code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` }, 404),
  );
  app.onError((err, c) => {
    if (err instanceof ZodError) return c.json(validationError(err), 400);
    const known = toApiError(err);
    if (known) {
      for (const [name, value] of Object.entries(known.headers)) c.header(name, value);
      return c.json({ code: known.code, message: known.message }, known.status);
    }
    deps.logger.error({ err, method: c.req.method, path: c.req.path }, 'internal error');
    return c.json({ code: 'internal', message: 'internal error; see the server log' }, 500);
  });
  return app;
}

function validationError(err: ZodError): { code: string; message: string } {
  const { code, message } = invalidInput(err);
  return { code, message };
}

/**
 * Serves the app over HTTP/1.1 with WebSocket upgrades (streaming exec); with a sandbox proxy,
 * sandbox traffic (by Host or by E2B's routing headers) goes to the sandbox before any route.
 * Resolves once listening.
 */
export async function serveApp(
  app: App,
  hostname: string,
  port: number,
  proxy?: SandboxProxy,
  opts: { trustedProxies?: TrustedProxies } = {},
): Promise<ServerType> {
  const server = serve({
    fetch: app.fetch,
    hostname,
    port,
    websocket: { server: new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 }) },
  });
  // Node cuts off any request whose body takes over 5 minutes; uploads and proxied streams may.
  (server as http.Server).requestTimeout = 0;
  const sockets = new Set<Duplex>();
  server.on('connection', (socket: Duplex) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  openSockets.set(server, sockets);
  putAdmissionFirst(server, opts.trustedProxies ?? new TrustedProxies(), proxy);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return server;
}

/** Every connection a server from `serveApp` holds, upgraded ones included (Node forgets those). */
const openSockets = new WeakMap<ServerType, Set<Duplex>>();

/**
 * Stops listening and resolves once every connection is gone: requests under way get `graceMs`, then
 * what is still open is cut — WebSockets, agent tunnels and proxied streams never end by themselves
 * (an agent in the same process, `wrenn up`, would otherwise hold its server open for good).
 */
export function closeServer(server: ServerType, graceMs = 5000): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  (server as http.Server).closeIdleConnections();
  const cut = setTimeout(() => {
    for (const socket of openSockets.get(server) ?? []) socket.destroy();
  }, graceMs);
  return closed.finally(() => clearTimeout(cut));
}

/**
 * Puts `admitRequest` (forwarded headers only from trusted proxies, the client's address, a request
 * id), then the sandbox proxy, in front of the server's own request and upgrade listeners (Hono's,
 * and node-server's WebSocket upgrade for exec): sandbox traffic never reaches them.
 */
function putAdmissionFirst(server: ServerType, trusted: TrustedProxies, proxy?: SandboxProxy): void {
  const requestListeners = server.listeners('request') as http.RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const { requestId } = admitRequest(req, trusted);
    // Everything the request leads to (log lines, calls to agents) carries its id.
    withLogContext({ requestId }, () => {
      const to = proxy?.route(req);
      if (to) return proxy!.handleRequest(req, res, to);
      res.setHeader('x-request-id', requestId);
      for (const listener of requestListeners) void listener(req, res);
    });
  });
  type UpgradeListener = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
  const upgradeListeners = server.listeners('upgrade') as UpgradeListener[];
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const { requestId } = admitRequest(req, trusted);
    withLogContext({ requestId }, () => {
      const to = proxy?.route(req);
      if (to) proxy!.handleUpgrade(req, socket, head, to);
      else for (const listener of upgradeListeners) listener(req, socket, head);
    });
  });
}
