import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { Logger } from '@wrenn/core';
import { ENVD_PORT } from '@wrenn/contracts';
import { TRAFFIC_TOKEN_HEADER, trafficTokenMatches } from '../services/network-policy.js';
import { TunnelPool } from './agent-tunnel.js';
import { forwardRequest, openConnection, type ForwardContext } from './forward.js';
import { rawReply, notFoundBody, sendJson } from './replies.js';
import { routeSandboxRequest, type SandboxAddress, type SandboxRoute } from './routing.js';
import { TargetCache, type ResolveResult, type Target } from './target-cache.js';
import { tunnelUpgrade } from './tunnel.js';

/**
 * Sandbox traffic (E2B-compatible): requests for `<port>-<sandboxId>.<domain>`, or carrying the
 * `E2b-Sandbox-Id` / `E2b-Sandbox-Port` headers, are streamed to that port inside the sandbox
 * (docs/e2b-compat.md). In four parts: `routing` (which requests are for a sandbox), `target-cache`
 * (where the sandbox is, and its connection pool), `forward` (HTTP) and `tunnel` (upgrades).
 *
 * Wiring: for each request (and each `upgrade`), call `route(req)`; undefined means normal API
 * traffic, anything else goes to `handleRequest` / `handleUpgrade` unchanged. A malformed routing
 * attempt comes back from `route` as `{ error }` so that the 400 is answered by the handlers and
 * the caller needs no branch of its own.
 */

export type { ResolveResult } from './target-cache.js';
export type { SandboxAddress, SandboxRoute, SandboxRouteError } from './routing.js';
export { routeSandboxRequest } from './routing.js';

export interface SandboxProxyDeps {
  /** Where sandbox `id` can be reached now (may resume it first); cached inside the proxy for ~1 s per id. */
  resolve(sandboxId: string): Promise<ResolveResult>;
  /** Traffic to a sandbox counts as activity; called at most once per `activityIntervalMs` per sandbox, fire-and-forget (errors ignored). */
  activity(sandboxId: string): void;
  logger: Logger;
}

export interface SandboxProxy {
  /** The sandbox and port a request is for, `{ error }` when it addresses one wrongly, or undefined when it is not sandbox traffic. */
  route(req: IncomingMessage): SandboxRoute | undefined;
  handleRequest(req: IncomingMessage, res: ServerResponse, to: SandboxRoute): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, to: SandboxRoute): void;
  /**
   * The sandbox was destroyed, paused, resumed or snapshotted: forget its address and close its idle
   * connections, so none of them serves whatever next lives at that address.
   */
  release(sandboxId: string): void;
  /**
   * The sandbox has just started (created or resumed): look it up and open a kept-alive connection
   * to its envd now, so that its client's first request (the e2b SDK sends a command right after the
   * create's answer) waits for neither. Failures are ignored: that request then looks for itself.
   * Resolves once done (never rejects); `port` is envd's unless given.
   */
  warm(sandboxId: string, port?: number): Promise<void>;
}

export interface SandboxProxyOptions {
  /** How long a resolved address is reused (ms). */
  cacheMs?: number;
  /** Least time between two `activity` calls for one sandbox (ms). */
  activityIntervalMs?: number;
  /** How long to wait for a TCP connection to the sandbox before answering 502 (ms). */
  connectTimeoutMs?: number;
}

export function createSandboxProxy(deps: SandboxProxyDeps, options: SandboxProxyOptions = {}): SandboxProxy {
  const { logger } = deps;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const targets = new TargetCache((id) => deps.resolve(id), {
    cacheMs: options.cacheMs ?? 1000,
    // A sandbox on a registered host: its connections are CONNECT streams through the agent.
    tunnelPool: (host, session, sandboxId) => new TunnelPool(host, session, sandboxId, connectTimeoutMs),
  });
  // Sandboxes whose activity was reported within the interval.
  const recentlyActive = new LRUCache<string, true>({ max: 4096, ttl: options.activityIntervalMs ?? 5000 });

  const ctx: ForwardContext = {
    logger,
    connectTimeoutMs,
    release: (sandboxId) => targets.release(sandboxId),
    /** Called on every request and on every chunk both ways: a long stream keeps its sandbox alive. */
    touch(sandboxId) {
      if (recentlyActive.has(sandboxId)) return;
      recentlyActive.set(sandboxId, true);
      try {
        deps.activity(sandboxId);
      } catch (err) {
        logger.debug({ sandboxId, err }, 'sandbox activity failed');
      }
    },
    async targetFor(to: SandboxAddress, fail, headers): Promise<Target | undefined> {
      let target: Target | undefined;
      try {
        target = await targets.target(to.sandboxId);
      } catch (err) {
        // Not "not found": the SDK reads a 502 as "the sandbox stopped", and this is our fault.
        logger.error({ sandboxId: to.sandboxId, err }, 'resolving a sandbox for traffic failed');
        fail(503, { sandboxId: to.sandboxId, message: 'The sandbox could not be looked up', code: 503 });
        return undefined;
      }
      if (!target) fail(502, notFoundBody(to.sandboxId));
      // A private sandbox (E2B's allowPublicTraffic: false): its ports answer only requests with its
      // traffic token. envd's port has its own (X-Access-Token), which E2B's SDK sends there.
      if (
        target?.trafficToken &&
        to.port !== ENVD_PORT &&
        !trafficTokenMatches(target.trafficToken, headers[TRAFFIC_TOKEN_HEADER])
      ) {
        fail(403, {
          code: 403,
          message: `sandbox ${to.sandboxId} takes private traffic only: send its traffic access token in the ${TRAFFIC_TOKEN_HEADER} header`,
          sandboxId: to.sandboxId,
        });
        return undefined;
      }
      return target;
    },
  };

  return {
    route: (req) => routeSandboxRequest(req.headers),
    handleRequest(req, res, route) {
      if ('error' in route) sendJson(res, 400, { code: 400, message: route.error });
      else forwardRequest(ctx, req, res, route);
    },
    handleUpgrade(req, socket, head, route) {
      socket.on('error', () => undefined); // torn down via 'close'
      if ('error' in route) rawReply(socket, 400, 'Bad Request', { code: 400, message: route.error });
      else tunnelUpgrade(ctx, req, socket, head, route);
    },
    release: (sandboxId) => targets.release(sandboxId),
    async warm(sandboxId, port = ENVD_PORT) {
      try {
        const target = await targets.target(sandboxId);
        if (target) await openConnection(target, port, connectTimeoutMs, logger);
      } catch (err) {
        logger.debug({ sandboxId, err }, 'warming the way to a sandbox failed');
      }
    },
  };
}
