import { tmpdir } from 'node:os';
import { createLogger } from '@wrenn/core';
import { SessionTokens } from '../auth/tokens.js';
import { openDatabase } from '../db/database.js';
import { BuildFiles } from '../services/builds/build-files.js';
import { openFleet } from '../services/fleet/fleet.js';
import { buildApp, OPENAPI_INFO } from './app.js';

/**
 * The OpenAPI document /openapi.json serves, made without a running server (an in-memory database
 * behind an app nobody calls): what `npm run gen` turns into the SDK's types.
 */
export async function renderOpenApiDocument(): Promise<object> {
  const logger = createLogger({ name: 'openapi', level: 'warn', pretty: false });
  const db = await openDatabase({ kind: 'pglite', dir: 'memory://' }, logger);
  try {
    const fleet = await openFleet(db, logger);
    const app = buildApp({
      db,
      tokens: new SessionTokens('only-renders-the-document-never-signs-anything'),
      hosts: fleet.directory,
      fleet,
      logger,
      builds: {
        files: new BuildFiles(tmpdir()),
        queue: { enqueue: async () => {}, cancelRunning: () => {} },
      },
    });
    fleet.directory.close();
    return app.getOpenAPI31Document({ openapi: '3.1.0', info: OPENAPI_INFO });
  } finally {
    await db.destroy();
  }
}
