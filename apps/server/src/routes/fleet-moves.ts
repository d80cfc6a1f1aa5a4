import { createRoute, z } from '@hono/zod-openapi';
import type { App, ServerDeps } from '../http/app-types.js';
import { bearer, errors, json, jsonBody, SandboxIdParam } from '../http/schemas.js';
import { audit } from '../services/audit.js';
import { movePausedSandbox } from '../services/fleet/sandbox-moves.js';
import { drainHost, undrainHost } from '../services/host-drain.js';

const HostIdParam = z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) });

const DrainOutcome = z
  .object({
    host_id: z.uuid(),
    moved: z.array(
      z.object({
        sandbox_id: z.string(),
        host_id: z.uuid().openapi({ description: 'Where it went' }),
        resumed: z.boolean().openapi({ description: 'It was running: paused, moved and resumed there' }),
      }),
    ),
    failed: z.array(
      z.object({ sandbox_id: z.string(), message: z.string().openapi({ description: 'Why it stayed' }) }),
    ),
  })
  .openapi('DrainOutcome');

/** Moving work between hosts (admins; `/v1/admin/*` is admin-only, see routes/admin.ts). */
export function fleetMoveRoutes(app: App, deps: ServerDeps): void {
  const adminErrors = { 400: errors[400], 401: errors[401], 403: errors[403], 404: errors[404] };

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/hosts/{id}/drain',
      tags: ['hosts'],
      summary: 'Take a host out of placement and move its sandboxes to other hosts',
      description:
        'Paused sandboxes move paused; running ones are paused, moved and resumed on their new host. Those that cannot move (the host is unreachable, no other host has room) stay as they were and are listed in `failed`. The host stays out of placement until `DELETE …/drain`.',
      security: bearer,
      request: { params: HostIdParam },
      responses: { 200: json(DrainOutcome, 'What moved and what stayed'), ...adminErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const outcome = await drainHost(deps, id);
      await audit(c, deps, {
        action: 'host.drain',
        target: id,
        teamId: null,
        details: { failed: outcome.failed.length },
      });
      return c.json({ host_id: id, ...outcome }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/admin/hosts/{id}/drain',
      tags: ['hosts'],
      summary: 'Put a drained host back into placement',
      security: bearer,
      request: { params: HostIdParam },
      responses: { 204: { description: 'In placement again' }, ...adminErrors },
    }),
    async (c) => {
      await undrainHost(deps, c.req.valid('param').id);
      await audit(c, deps, { action: 'host.undrain', target: c.req.valid('param').id, teamId: null });
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/sandboxes/{id}/move',
      tags: ['hosts'],
      summary: 'Move a paused sandbox to another host (its checkpoint, disk and state go with it)',
      description:
        'To `host_id`, or where placement puts it. The host must be one the sandbox’s team may use, online, not draining, with room. 409 when the sandbox is not paused or already moving.',
      security: bearer,
      request: {
        params: SandboxIdParam,
        body: jsonBody(z.strictObject({ host_id: z.uuid().optional() })),
      },
      responses: {
        200: json(z.object({ sandbox_id: z.string(), host_id: z.uuid() }), 'Moved'),
        409: errors[409],
        503: errors[503],
        ...adminErrors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const to = await movePausedSandbox(deps, id, { to: c.req.valid('json').host_id });
      await audit(c, deps, { action: 'sandbox.move', target: id, teamId: null, details: { host_id: to } });
      return c.json({ sandbox_id: id, host_id: to }, 200);
    },
  );
}
