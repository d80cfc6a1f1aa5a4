import type { AddressInfo } from 'node:net';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { formatHostPort, type Logger } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import { persistentJwtSecret } from './auth/jwt-secret.js';
import { SessionTokens } from './auth/tokens.js';
import type { ServerConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { buildApp, serveApp } from './http/app.js';
import { createSandboxProxy } from './proxy/sandbox-proxy.js';
import { sandboxTraffic } from './services/sandbox-traffic.js';
import { bootstrapAdmin } from './bootstrap.js';
import { startReconciler } from './services/reconciler.js';

export interface RunningServer {
  url: string;
  /** The first admin's API key (from the data dir), when this server made one. */
  adminApiKey?: string;
  /** The first admin's password (login as admin@wrenn.local for `/v1/admin/...`), likewise. */
  adminPassword?: string;
  stop(): Promise<void>;
}

/** Opens the database, connects to the host agent and serves the API. */
export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const db = await openDatabase(config.database, logger);
  const admin = await bootstrapAdmin(db, config.dataDir);
  const tokens = new SessionTokens(config.jwtSecret ?? (await persistentJwtSecret(config.dataDir, logger)));
  const agent = createClient(
    hostagent.HostAgentService,
    createConnectTransport({ baseUrl: config.agentUrl, httpVersion: '2' }),
  );
  // Every path that destroys, pauses, resumes or snapshots a sandbox tells the proxy, which then
  // never hands that sandbox's kept-alive connections to whatever next has its address.
  const sandboxReleased = (sandboxId: string) => proxy.release(sandboxId);
  const proxy = createSandboxProxy(
    {
      ...sandboxTraffic({ db, agent, logger, sandboxReleased }),
      logger: logger.child({ component: 'proxy' }),
    },
    // Under the agent's 2 s reaper period, so even a 3 s timeout sees traffic as activity.
    { activityIntervalMs: 1000 },
  );
  const app = buildApp({ db, tokens, agent, logger, uploadMaxBytes: config.uploadMaxBytes, sandboxReleased });
  const reconciler = startReconciler(db, agent, logger.child({ component: 'reconciler' }), {
    sandboxReleased,
  });
  const server = await serveApp(app, config.listenHost, config.listenPort, proxy);
  const { port } = server.address() as AddressInfo;
  const url = `http://${formatHostPort(config.listenHost, port)}`;
  logger.info({ url, database: config.database.kind, agent: config.agentUrl }, 'control plane ready');
  return {
    url,
    adminApiKey: admin?.apiKey,
    adminPassword: admin?.password,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await reconciler.stop();
      await db.destroy();
    },
  };
}
