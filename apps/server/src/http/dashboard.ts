import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { App } from './app-types.js';
import { ApiError } from './errors.js';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

/**
 * The dashboard at `/` (its pages are routed after `#`, so no page path can meet an API path, E2B's
 * `/sandboxes` included) and its bundled files at `/assets/…`, named by content hash: cached for good.
 */
export function dashboardRoutes(app: App, dir: string | undefined): void {
  app.get('/', async (c) => {
    const page = dir
      ? await readFile(path.join(dir, 'index.html'), 'utf8').catch(() => undefined)
      : undefined;
    if (!page)
      throw new ApiError(
        404,
        'not_found',
        'the dashboard is not built: run `npm run build` (the setup command does); the API is at /docs',
      );
    c.header('cache-control', 'no-cache');
    return c.html(page);
  });
  app.get('/assets/:file', async (c) => {
    const file = c.req.param('file');
    const type = TYPES[path.extname(file)];
    // One plain file name: no separators, so nothing outside the directory can be named.
    const body =
      dir && type && /^[\w.-]+$/.test(file)
        ? await readFile(path.join(dir, 'assets', file)).catch(() => undefined)
        : undefined;
    if (!body)
      return c.json({ code: 'not_found', message: `no dashboard asset ${JSON.stringify(file)}` }, 404);
    return c.body(body, 200, {
      'content-type': type!,
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });
}
