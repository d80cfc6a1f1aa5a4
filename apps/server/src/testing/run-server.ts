import { createLogger } from '@wrenn/core';
import { loadServerConfig } from '../config.js';
import { startServer } from '../server.js';

// A control plane in a process of its own, configured by the environment like `wrenn server`
// (tests that need to kill one: `node --import tsx src/testing/run-server.ts`). Prints its URL.
const config = loadServerConfig();
const server = await startServer(
  config,
  createLogger({ name: 'test-server', level: config.logLevel, pretty: false }),
);
process.stdout.write(`listening ${server.url}\n`);
process.on('SIGTERM', () => {
  void server.stop().then(() => process.exit(0));
});
