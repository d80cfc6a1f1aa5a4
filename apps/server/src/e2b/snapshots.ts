import type { Hono } from 'hono';
import { z } from 'zod';
import { clampTimeoutSec, MAX_TIMEOUT_SEC } from '@wrenn/core';
import type { Env, ServerDeps } from '../http/app-types.js';
import { authed } from '../http/auth.js';
import { optionalJsonBody } from '../http/errors.js';
import { TEMPLATE_NAME } from '../http/schemas.js';
import { audit } from '../services/audit.js';
import { createSandbox } from '../services/sandbox-lifecycle.js';
import { createTeamSnapshot, deleteTeamSnapshot, listTeamSnapshots } from '../services/templates.js';
import { e2bApiError } from './errors.js';
import { sandboxOf } from './sandboxes.js';
import { sandboxView } from './views.js';

const SnapshotRequest = z.object({ name: TEMPLATE_NAME.optional() });
const ForkRequest = z.object({
  count: z.number().int().min(1).max(20).default(1),
  timeout: z.number().int().min(1).max(MAX_TIMEOUT_SEC).default(15),
});

/** E2B's snapshot routes: snapshot a sandbox, fork it, list snapshots (deleted as templates: templates.ts). */
export function e2bSnapshotRoutes(api: Hono<Env>, deps: ServerDeps): void {
  api.post('/sandboxes/:id/snapshots', async (c) => {
    const row = await sandboxOf(deps, c);
    const { name } = SnapshotRequest.parse((await optionalJsonBody(c.req.raw)) ?? {});
    const snapshot = await createTeamSnapshot(
      deps,
      authed(c, 'teamId'),
      row.id,
      name ?? `snapshot-${Date.now().toString(36)}`,
      c.req.raw.signal,
    );
    await audit(c, deps, { action: 'sandbox.snapshot', target: row.id, details: { name: snapshot.name } });
    return c.json({ snapshotID: snapshot.id, names: [snapshot.name] }, 201);
  });

  // Fork: one snapshot (the source is paused for the copy and resumed), `count` sandboxes restored
  // from it, each reported on its own; the snapshot goes after (restored sandboxes do not need it).
  api.post('/sandboxes/:id/fork', async (c) => {
    const row = await sandboxOf(deps, c);
    const teamId = authed(c, 'teamId');
    const body = ForkRequest.parse((await optionalJsonBody(c.req.raw)) ?? {});
    const snapshot = await createTeamSnapshot(
      deps,
      teamId,
      row.id,
      `fork-${row.id}-${Date.now().toString(36)}`,
    );
    await audit(c, deps, { action: 'sandbox.snapshot', target: row.id, details: { fork: body.count } });
    try {
      const results = await Promise.allSettled(
        Array.from({ length: body.count }, async () => {
          const made = await createSandbox(deps, teamId, {
            template: snapshot.id,
            shownTemplate: row.template,
            timeoutSec: clampTimeoutSec(body.timeout),
            metadata: row.metadata,
            env: {},
            onTimeout: 'kill',
            // A fork is no freer than its source.
            network: row.network ?? undefined,
            allowPublicTraffic: row.allow_public_traffic,
          });
          return sandboxView(made.row, made.info, deps.tokens);
        }),
      );
      return c.json(
        results.map((r) => {
          if (r.status === 'fulfilled') return { sandbox: r.value };
          const err = e2bApiError(r.reason);
          return { error: { code: err?.status ?? 500, message: err?.message ?? 'the fork failed to start' } };
        }),
        201,
      );
    } finally {
      await deleteTeamSnapshot(deps, snapshot.id).catch((err: unknown) =>
        deps.logger.warn({ err, snapshot: snapshot.id }, 'could not delete a fork snapshot'),
      );
    }
  });

  api.get('/snapshots', async (c) => {
    const rows = await listTeamSnapshots(deps.db, authed(c, 'teamId'), {
      sourceSandboxId: c.req.query('sandboxID'),
      name: c.req.query('name'),
    });
    return c.json(
      rows.map((r) => ({ snapshotID: r.id, names: [r.name] })),
      200,
    );
  });
}
