import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { stringify } from 'yaml';
import type { App } from './app-types.js';

const require = createRequire(import.meta.url);
// Served from the installed package: the docs page loads nothing from the internet.
const swaggerDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const ASSETS = new Set([
  'swagger-ui.css',
  'swagger-ui-bundle.js',
  'swagger-ui-standalone-preset.js',
  'favicon-32x32.png',
]);
const TYPES: Record<string, string> = { '.css': 'text/css', '.js': 'text/javascript', '.png': 'image/png' };

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Wrenn API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"><link rel="icon" href="/docs/assets/favicon-32x32.png"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui', deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: 'StandaloneLayout' });</script>
</body></html>`;

/** `/openapi.yaml` (the same document as /openapi.json) and the interactive page at `/docs`. */
export function docsRoutes(app: App, document: () => object): void {
  app.get('/openapi.yaml', (c) => c.body(stringify(document()), 200, { 'content-type': 'application/yaml' }));
  app.get('/docs', (c) => c.html(PAGE));
  app.get('/docs/assets/:file', async (c) => {
    const file = c.req.param('file');
    if (!ASSETS.has(file))
      return c.json({ code: 'not_found', message: `no asset ${JSON.stringify(file)}` }, 404);
    const body = await readFile(path.join(swaggerDir, file));
    return c.body(body, 200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'cache-control': 'max-age=3600',
    });
  });
}
