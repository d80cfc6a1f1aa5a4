import net from 'node:net';
import {
  CredentialsStore,
  loadAgentConfig,
  startAgent,
  type AgentConfig,
  type RunningAgent,
} from '@wrenn/agent';
import { createLogger, errorMessage, formatHostPort, type Logger } from '@wrenn/core';
import { loadServerConfig, startServer, type RunningServer } from '@wrenn/server';

const UNHANDLED_REJECTION = 'unhandled promise rejection (a bug; the process continues)';

const usage = `usage: wrenn <command>

commands:
  up       run Wrenn on this machine: the control plane (embedded database) and its first host's agent
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
    [
      `Wrenn host agent listening on ${agent.url} (Connect RPC: wrenn.hostagent.v1.HostAgentService)`,
      ...(agent.metricsUrl ? [`  metrics (Prometheus): ${agent.metricsUrl}`] : []),
      '',
    ].join('\n'),
  );
  stopOnSignal(logger, () => agent.stop());
}

async function runServer(): Promise<void> {
  const config = loadServerConfig();
  const logger = createLogger({ name: 'wrenn-server', level: config.logLevel });
  const server = await startServer(config, logger);
  process.stdout.write(
    [
      `Wrenn API listening on ${server.url} (docs: ${server.url}/docs)`,
      ...(server.metricsUrl ? [`  metrics (Prometheus): ${server.metricsUrl}`] : []),
      ...adminLines(server),
      '',
    ].join('\n'),
  );
  stopOnSignal(logger, () => server.stop());
}

/**
 * The first admin's key and password, printed by the start that made them and never again (a
 * start's output ends up in logs); later starts say where they are kept instead.
 */
function adminLines(server: RunningServer): string[] {
  const files = server.adminSecretFiles;
  if (!server.adminApiKey)
    return [
      `  admin API key and password: not shown again; kept in ${files.apiKey} and ${files.password} (0600)`,
    ];
  return [
    `  admin API key (X-API-Key; kept in ${files.apiKey}, shown this once): ${server.adminApiKey}`,
    `  admin login (POST /v1/auth/login; password kept in ${files.password}, shown this once): admin@wrenn.local / ${server.adminPassword ?? ''}`,
  ];
}

async function runUp(): Promise<void> {
  const agentEnv = loadAgentConfig();
  const logger = createLogger({ name: 'wrenn', level: agentEnv.logLevel });
  // The server first: the agent registers with it (docs/fleet.md "`wrenn up`'s own host").
  // WRENN_AGENT_URL is not read: this agent is a registered host, not the static one.
  const server = await startServer(
    { ...loadServerConfig(), agentUrl: '' },
    logger.child({ component: 'server' }),
  );
  let agent: RunningAgent;
  try {
    agent = await startOwnAgent(agentEnv, server, logger);
  } catch (err) {
    await server.stop();
    throw err;
  }
  process.stdout.write(
    [
      `Wrenn is up.`,
      `  dashboard:  ${server.url}/`,
      `  API:        ${server.url}/v1`,
      `  API docs:   ${server.url}/docs`,
      `  host agent: ${agent.url} (platform host ${agent.hostId}, mutual TLS)`,
      ...(server.metricsUrl ? [`  metrics:    ${server.metricsUrl} (server)`] : []),
      ...(agent.metricsUrl ? [`              ${agent.metricsUrl} (agent)`] : []),
      ...adminLines(server),
      `Try: curl -s -X POST -H "X-API-Key: <key>" -H 'content-type: application/json' -d '{}' ${server.url}/v1/sandboxes`,
      '',
    ].join('\n'),
  );
  stopOnSignal(logger, async () => {
    await server.stop();
    await agent.stop();
  });
}

/**
 * The agent of `wrenn up`, registered with the server beside it as a platform host: with the
 * registration token the server hands over the first time, with its stored credentials after.
 * Its address is fixed before it listens (port 0 → a free port now), since registering sends it.
 */
async function startOwnAgent(
  config: AgentConfig,
  server: RunningServer,
  logger: Logger,
): Promise<RunningAgent> {
  const port = config.listenPort || (await freePort(config.listenHost));
  const advertise = { host: dialable(config.listenHost), port };
  const store = CredentialsStore.in(config.dataDir);
  const plan = await server.prepareLocalHost({
    registeredHostId: (await store.load())?.hostId,
    address: formatHostPort(advertise.host, advertise.port),
  });
  if (plan.staleCredentials)
    logger.warn({ setAside: await store.setAside() }, 'set the stale host credentials aside');
  const agent = await startAgent(
    {
      ...config,
      listenPort: port,
      fleet: {
        ...config.fleet,
        controlPlaneUrl: server.url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:'),
        registrationToken: plan.registrationToken,
        advertise,
      },
    },
    logger.child({ component: 'agent' }),
  ).catch(async (err: unknown) => {
    await server.abandonLocalHost(plan.hostId).catch(() => undefined);
    throw err;
  });
  if (agent.hostId !== plan.hostId) {
    await agent.stop();
    throw new Error(`the agent is host ${agent.hostId}, but the server expected ${plan.hostId}`);
  }
  return agent;
}

// A wildcard listener is reached on loopback from this machine.
function dialable(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
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
