import { loadAgentConfig, startAgent } from '@wrenn/agent';
import { createLogger, errorMessage } from '@wrenn/core';

const usage = `usage: wrenn <command>

commands:
  up       run Wrenn on this machine (today: the host agent, ready to create sandboxes)
  agent    run the host agent
`;

async function runAgent(): Promise<void> {
  const config = loadAgentConfig();
  const logger = createLogger({ name: 'wrenn-agent', level: config.logLevel });
  const agent = await startAgent(config, logger);
  process.stdout.write(
    `Wrenn host agent listening on ${agent.url} (Connect RPC: wrenn.hostagent.v1.HostAgentService)\n`,
  );
  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without cleanup; the next start cleans up');
      process.exit(130);
    }
    logger.info({ signal }, 'shutting down');
    agent.stop().then(
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

async function main(argv: string[]): Promise<void> {
  const [command] = argv;
  switch (command) {
    case 'up':
    case 'agent':
      return runAgent();
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
