import { loadAgentConfig, startAgent } from '@wrenn/agent';
import { createLogger, errorMessage, type Logger } from '@wrenn/core';
import { loadServerConfig, startServer } from '@wrenn/server';

const UNHANDLED_REJECTION = 'unhandled promise rejection (a bug; the process continues)';

const usage = `usage: wrenn <command>

commands:
  up       run Wrenn on this machine: the host agent and the control plane (embedded database)
  agent    run the host agent only
  server   run the control plane only (WRENN_AGENT_URL names the agent)
`;

/**
 * Stops everything on SIGINT/SIGTERM; a second signal exits at once (the next start cleans up).
 * An unhandled rejection is a bug, but ending the process for it would take every running sandbox
 * with it (a restarted agent keeps only paused ones): it is logged loudly and the process goes on.
 * The e2e harness fails a run whose agent logged one.
 */
function stopOnSignal(logger: Logger, stop: () => Promise<void>): void {
  process.on('unhandledRejection', (reason: unknown) => {
    logger.error({ err: reason }, UNHANDLED_REJECTION);
  });
  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without cleanup; the next start cleans up');
      process.exit(130);
    }
    logger.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

async function runAgent(): Promise<void> {
  const config = loadAgentConfig();
  const logger = createLogger({ name: 'wrenn-agent', level: config.logLevel });
  const agent = await startAgent(config, logger);
  process.stdout.write(
    `Wrenn host agent listening on ${agent.url} (Connect RPC: wrenn.hostagent.v1.HostAgentService)\n`,
  );
  stopOnSignal(logger, () => agent.stop());
}

async function runServer(): Promise<void> {
  const config = loadServerConfig();
  const logger = createLogger({ name: 'wrenn-server', level: config.logLevel });
  const server = await startServer(config, logger);
  process.stdout.write(`Wrenn API listening on ${server.url} (docs: ${server.url}/docs)\n`);
  stopOnSignal(logger, () => server.stop());
}

async function runUp(): Promise<void> {
  const agentConfig = loadAgentConfig();
  const logger = createLogger({ name: 'wrenn', level: agentConfig.logLevel });
  const agent = await startAgent(agentConfig, logger.child({ component: 'agent' }));
  const server = await startServer(
    { ...loadServerConfig(), agentUrl: agent.url },
    logger.child({ component: 'server' }),
  ).catch(async (err: unknown) => {
    await agent.stop();
    throw err;
  });
  process.stdout.write(
    [
      `Wrenn is up.`,
      `  API:        ${server.url}/v1`,
      `  API docs:   ${server.url}/docs`,
      `  host agent: ${agent.url}`,
      server.adminApiKey
        ? `  admin API key (X-API-Key; also in ${agentConfig.dataDir}/server/admin-api-key): ${server.adminApiKey}`
        : '  admin API key: not available (the database already had users)',
      ...(server.adminPassword
        ? [
            `  admin login (POST /v1/auth/login; also in ${agentConfig.dataDir}/server/admin-password): admin@wrenn.local / ${server.adminPassword}`,
          ]
        : []),
      `Try: curl -s -X POST -H "X-API-Key: <key>" -H 'content-type: application/json' -d '{}' ${server.url}/v1/sandboxes`,
      '',
    ].join('\n'),
  );
  stopOnSignal(logger, async () => {
    await server.stop();
    await agent.stop();
  });
}

async function main(argv: string[]): Promise<void> {
  const [command] = argv;
  switch (command) {
    case 'up':
      return runUp();
    case 'agent':
      return runAgent();
    case 'server':
      return runServer();
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(usage);
      return;
    default:
      process.stderr.write(`wrenn: unknown command ${JSON.stringify(command)}\n\n${usage}`);
      process.exit(2);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`wrenn: ${errorMessage(err)}\n`);
  process.exit(1);
});
