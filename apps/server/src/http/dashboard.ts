import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { App } from './app-types.js';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Wrenn</title></head>
<body><p>The dashboard is not built: run <code>npm run build</code> (the setup command does).
The API is at <a href="/docs">/docs</a>.</p></body></html>`;

/**
 * The dashboard at `/` (its pages are routed after `#`, so no page path can meet an API path, E2B's
 * `/sandboxes` included) and its bundled files at `/assets/…`, named by content hash: cached for good.
 */
export function dashboardRoutes(app: App, dir: string | undefined): void {
  app.get('/', async (c) => {
    const page = dir
      ? await readFile(path.join(dir, 'index.html'), 'utf8').catch(() => undefined)
      : undefined;
    c.header('cache-control', 'no-cache');
    return c.html(page ?? NOT_BUILT, page ? 200 : 503);
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
