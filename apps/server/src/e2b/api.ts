import { Hono } from 'hono';
import type { Env, ServerDeps } from '../http/app-types.js';
import { noteMountedRoute } from '../metrics/request-metrics.js';
import { requireApiKey } from '../http/auth.js';
import { buildUploadRoutes } from './build-uploads.js';
import { e2bApiError } from './errors.js';
import { e2bSandboxRoutes } from './sandboxes.js';
import { e2bSnapshotRoutes } from './snapshots.js';
import { e2bTemplateRoutes } from './templates.js';

/**
 * E2B's control-plane API, as its SDKs call it (docs/e2b-compat.md): `E2B_API_URL` pointed at the
 * Wrenn server and a Wrenn API key as `E2B_API_KEY` are enough. Errors are E2B's `{code, message}`
 * with `code` equal to the HTTP status (the JS SDK reads it from the body). The handlers speak
 * E2B's shapes; what they do goes through `services/`, as `/v1` does.
 */
export function buildE2bApi(deps: ServerDeps): Hono<Env> {
  const api = new Hono<Env>();
  // The server's request timer sees only its own routes; this tells it which of ours answered.
  if (deps.metrics) api.use('*', noteMountedRoute);
  // Before the key check: a build upload carries only its URL's token.
  buildUploadRoutes(api, deps);
  api.use('*', requireApiKey(deps));
  api.onError((err, c) => {
    const known = e2bApiError(err);
    if (!known)
      deps.logger.error({ err, method: c.req.method, path: c.req.path }, 'internal error (E2B API)');
    const status = known?.status ?? 500;
    return c.json({ code: status, message: known?.message ?? 'internal error; see the server log' }, status);
  });
  api.notFound((c) => c.json({ code: 404, message: `no route for ${c.req.method} ${c.req.path}` }, 404));
  e2bSandboxRoutes(api, deps);
  e2bSnapshotRoutes(api, deps);
  e2bTemplateRoutes(api, deps);
  return api;
}

/** The paths this API serves (the server routes only these to it). */
export function isE2bApiPath(path: string): boolean {
  return /^\/(v2\/)?sandboxes(\/|$)|^\/snapshots$|^\/(v[23]\/)?templates(\/|$)|^\/build-uploads\//.test(path);
}
