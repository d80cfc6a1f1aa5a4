import { createRoute, z } from '@hono/zod-openapi';
import { MAX_POOL_SIZE } from '@wrenn/core';
import type { App, ServerDeps } from '../http/app-types.js';
import { bearer, errors, json, jsonBody, TEMPLATE_NAME } from '../http/schemas.js';
import { audit } from '../services/audit.js';
import { setWarmPoolSize } from '../services/fleet/warm-pools.js';

const HostPool = z.object({
  host_id: z.uuid(),
  size: z.number().int().openapi({ description: 'Ready sandboxes this host keeps of the template' }),
  ready: z.number().int().openapi({ description: 'Ready to be claimed, as last read' }),
  claims: z.number().int().openapi({ description: 'Creates served from the pool since its agent started' }),
  misses: z.number().int().openapi({
    description: 'Creates of the template the pool could not serve (empty, or other sizes asked)',
  }),
  refills: z.number().int(),
  failures: z.number().int().openapi({ description: 'Refills that failed in a row (it backs off)' }),
  last_error: z.string(),
  reported_at: z.string().nullable(),
});

const WarmPool = z
  .object({
    template: z.string().openapi({ description: "The agent's name: a platform template, or `snap-<id>`" }),
    template_id: z
      .uuid()
      .nullable()
      .openapi({ description: "A team snapshot's id; null: a platform template" }),
    size: z.number().int().nullable().openapi({
      description:
        'What each eligible host keeps; null: not set here (an agent started with `WRENN_WARM_POOL`)',
    }),
    ready: z.number().int(),
    claims: z.number().int(),
    misses: z.number().int(),
    hit_rate: z
      .number()
      .nullable()
      .openapi({ description: 'claims / (claims + misses) over its hosts; null before any create' }),
    hosts: z.array(HostPool),
  })
  .openapi('WarmPool');

const TemplateParam = z.object({
  template: z.union([z.uuid(), TEMPLATE_NAME]).openapi({
    param: { name: 'template', in: 'path' },
    description: "A platform template's name or a snapshot's id",
  }),
});

/** Warm pools (admins; `/v1/admin/*` is admin-only, see routes/admin.ts). */
export function warmPoolRoutes(app: App, deps: ServerDeps): void {
  const adminErrors = { 400: errors[400], 401: errors[401], 403: errors[403], 404: errors[404] };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/warm-pools',
      tags: ['hosts'],
      summary: 'Warm pools: sizes, ready sandboxes and hit rate, per template and host',
      description:
        'As the leader last read them from the agents (every 10 s); pools an agent keeps on its own (`WRENN_WARM_POOL`) are listed with `size: null`.',
      security: bearer,
      responses: { 200: json(z.object({ pools: z.array(WarmPool) }), 'Every pool'), ...adminErrors },
    }),
    async (c) => c.json({ pools: await listWarmPools(deps) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/v1/admin/warm-pools/{template}',
      tags: ['hosts'],
      summary: 'Set how many ready sandboxes of a template each host keeps (0 empties the pools)',
      description:
        'A platform template is pooled on every platform host; a team snapshot on the hosts that hold it and may run that team’s sandboxes. A create of the template with its default sizes is then served from a pool (tens of ms) while one has a sandbox ready. Pooled sandboxes count against no team and have no timeout until claimed.',
      security: bearer,
      request: {
        params: TemplateParam,
        body: jsonBody(z.strictObject({ size: z.number().int().min(0).max(MAX_POOL_SIZE) })),
      },
      responses: { 200: json(WarmPool, 'The pool, as its hosts now report it'), ...adminErrors },
    }),
    async (c) => {
      const { template } = await setWarmPoolSize(
        deps,
        c.req.valid('param').template,
        c.req.valid('json').size,
      );
      const size = c.req.valid('json').size;
      await audit(c, deps, { action: 'admin.warm_pool', target: template, teamId: null, details: { size } });
      const pools = await listWarmPools(deps);
      return c.json(
        pools.find((p) => p.template === template)!,
        200,
      );
    },
  );
}

type View = z.infer<typeof WarmPool>;

async function listWarmPools(deps: Pick<ServerDeps, 'db'>): Promise<View[]> {
  const { db } = deps;
  const rows = await db.selectFrom('warm_pools').select(['template', 'template_id', 'size']).execute();
  const hosts = await db
    .selectFrom('hosts')
    .select(['id', 'warm_pools', 'warm_pools_at'])
    .where('status', '=', 'online')
    .where('warm_pools', 'is not', null)
    .orderBy('created_at')
    .execute();
  const emptyPool = (template: string, templateId: string | null, size: number | null): View => ({
    template,
    template_id: templateId,
    size,
    ready: 0,
    claims: 0,
    misses: 0,
    hit_rate: null,
    hosts: [],
  });
  const pools = new Map<string, View>(
    rows.map((r) => [r.template, emptyPool(r.template, r.template_id, r.size)]),
  );
  for (const host of hosts)
    for (const p of host.warm_pools ?? []) {
      // A pool the agent keeps on its own (WRENN_WARM_POOL): no size set here.
      let pool = pools.get(p.template);
      if (!pool) pools.set(p.template, (pool = emptyPool(p.template, null, null)));
      pool.ready += p.ready;
      pool.claims += p.claims;
      pool.misses += p.misses;
      pool.hosts.push({
        host_id: host.id,
        size: p.size,
        ready: p.ready,
        claims: p.claims,
        misses: p.misses,
        refills: p.refills,
        failures: p.failures,
        last_error: p.last_error,
        reported_at: host.warm_pools_at?.toISOString() ?? null,
      });
    }
  for (const pool of pools.values()) {
    const asked = pool.claims + pool.misses;
    pool.hit_rate = asked > 0 ? pool.claims / asked : null;
  }
  return [...pools.values()].sort((a, b) => a.template.localeCompare(b.template));
}
