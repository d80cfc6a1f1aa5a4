import { createRoute, z } from '@hono/zod-openapi';
import { hostagent } from '@wrenn/contracts';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed, requireTeamCaller } from '../http/auth.js';
import { audited } from '../services/audit.js';
import { platformAgent } from '../services/fleet/host-agents.js';
import { apiKey, errors, json, jsonBody, SANDBOX_ID, snapshotView, TEMPLATE_NAME } from '../http/schemas.js';
import {
  createTeamSnapshot,
  deleteTeamSnapshot,
  isAgentSnapshotName,
  listTeamSnapshots,
  listTeamTemplates,
  teamSnapshot,
} from '../services/templates.js';

const Snapshot = z
  .object({
    id: z.string().uuid(),
    name: z.string(),
    source_sandbox_id: z.string().nullable(),
    vcpus: z.number().int(),
    memory_mb: z.number().int(),
    disk_mb: z.number().int(),
    size_bytes: z.number().int(),
    created_at: z.string(),
  })
  .openapi('Snapshot');

const CreateSnapshot = z
  .strictObject({
    sandbox_id: SANDBOX_ID,
    name: TEMPLATE_NAME.openapi({ description: 'Unique within the team; sandboxes name it as `template`' }),
  })
  .openapi('CreateSnapshot');

const Template = z
  .object({
    name: z.string(),
    kind: z.enum(['image', 'snapshot']),
    platform: z.boolean().openapi({ description: 'Visible to every team' }),
    id: z.string().uuid().nullable().openapi({ description: 'Snapshots and built templates' }),
  })
  .openapi('Template');

const SnapshotIdParam = z.object({
  id: z
    .string()
    .uuid()
    .openapi({ param: { name: 'id', in: 'path' } }),
});

/** Snapshots are team-scoped templates; the platform's images (like `base`) are visible to all. */
export function snapshotRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db } = deps;
  for (const path of ['/v1/snapshots', '/v1/snapshots/*', '/v1/templates'])
    app.use(path, requireTeamCaller(deps));

  const owned = (teamId: string, id: string) => teamSnapshot(db, teamId, id);

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/snapshots',
      tags: ['snapshots'],
      summary: 'Snapshot a sandbox (memory, processes and disk) into a template',
      description:
        'A running sandbox is paused for the copy and resumed; a paused one is used as it is. Sandboxes created from the snapshot have its vCPUs, memory and disk.',
      security: apiKey,
      request: { body: jsonBody(CreateSnapshot) },
      responses: { 201: json(Snapshot, 'The snapshot'), ...errors },
    }),
    async (c) => {
      const { sandbox_id, name } = c.req.valid('json');
      const row = await audited(
        c,
        deps,
        { action: 'sandbox.snapshot', target: sandbox_id, details: { name } },
        () => createTeamSnapshot(deps, authed(c, 'teamId'), sandbox_id, name, c.req.raw.signal),
      );
      return c.json(snapshotView(row), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/snapshots',
      tags: ['snapshots'],
      summary: "The team's snapshots",
      security: apiKey,
      responses: { 200: json(z.object({ snapshots: z.array(Snapshot) }), 'Snapshots'), 401: errors[401] },
    }),
    async (c) => {
      const rows = await listTeamSnapshots(db, authed(c, 'teamId'));
      return c.json({ snapshots: rows.map(snapshotView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/snapshots/{id}',
      tags: ['snapshots'],
      summary: 'A snapshot',
      security: apiKey,
      request: { params: SnapshotIdParam },
      responses: {
        200: json(Snapshot, 'The snapshot'),
        400: errors[400],
        401: errors[401],
        404: errors[404],
      },
    }),
    async (c) => c.json(snapshotView(await owned(authed(c, 'teamId'), c.req.valid('param').id)), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/snapshots/{id}',
      tags: ['snapshots'],
      summary: 'Delete a snapshot and its files',
      description:
        'Sandboxes created from it are independent and keep running. Refused (409) only while a sandbox is being created from it.',
      security: apiKey,
      request: { params: SnapshotIdParam },
      responses: { 204: { description: 'Deleted' }, ...errors },
    }),
    async (c) => {
      const row = await owned(authed(c, 'teamId'), c.req.valid('param').id);
      await audited(c, deps, { action: 'snapshot.delete', target: row.id }, () =>
        deleteTeamSnapshot(deps, row.id),
      );
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/templates',
      tags: ['snapshots'],
      summary:
        "Templates a sandbox can start from: the platform's images and built templates, the team's snapshots and built templates",
      security: apiKey,
      responses: { 200: json(z.object({ templates: z.array(Template) }), 'Templates'), ...errors },
    }),
    async (c) => {
      const { templates } = await (await platformAgent(deps)).listTemplates({});
      const platform = templates
        .filter((t) => t.kind === hostagent.TemplateKind.IMAGE && !isAgentSnapshotName(t.name))
        .map((t) => ({ name: t.name, kind: 'image' as const, platform: true, id: null }));
      const own = await listTeamTemplates(db, authed(c, 'teamId'));
      const snapshots = own.map((t) => ({
        name: t.name,
        kind: t.kind,
        platform: t.team_id === null,
        id: t.id,
      }));
      return c.json({ templates: [...platform, ...snapshots] }, 200);
    },
  );
}
