import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { formatHostPort, type Logger } from '@wrenn/core';
import { listenMetricsAt } from '@wrenn/core/metrics';
import { ServerMetrics } from './metrics/server-metrics.js';
import { persistentJwtSecret } from './auth/jwt-secret.js';
import { SessionTokens } from './auth/tokens.js';
import { FLEET_DEFAULTS, type ServerConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { BuildFiles } from './services/builds/build-files.js';
import { BUILD_DEFAULTS, startBuildQueue } from './services/builds/queue.js';
import { buildRunner, RUNNER_DEFAULTS, runnerTimeoutMs } from './services/builds/runner.js';
import { buildApp, closeServer, serveApp } from './http/app.js';
import { createSandboxProxy } from './proxy/sandbox-proxy.js';
import { openFleet } from './services/fleet/fleet.js';
import { refreshHooksFor } from './services/fleet/host-credentials.js';
import { startHostMonitor } from './services/fleet/host-monitor.js';
import { startPausedReplicas } from './services/fleet/paused-replicas.js';
import { startWarmPoolSync } from './services/fleet/warm-pools.js';
import { abandonLocalHost, prepareLocalHost, type LocalHostPlan } from './services/fleet/local-host.js';
import { startLeaderElection } from './services/fleet/leader.js';
import { sandboxTraffic } from './services/sandbox-traffic.js';
import { adminSecretFiles, bootstrapAdmin } from './bootstrap.js';
import { TrustedProxies } from './http/client-address.js';
import { AUDIT_RETENTION_DEFAULT_DAYS, startAuditRetention } from './services/audit-retention.js';
import { startReconciler } from './services/reconciler.js';

export interface RunningServer {
  url: string;
  /** The first admin's API key, only when this start made it (later starts: `adminSecretFiles`). */
  adminApiKey?: string;
  /** The first admin's password (login as admin@wrenn.local for `/v1/admin/...`), likewise. */
  adminPassword?: string;
  /** Where the first admin's key and password are kept (0600; written by the start that made them). */
  adminSecretFiles: { apiKey: string; password: string };
  /** http://host:port/metrics (Prometheus); undefined when metrics are off. */
  metricsUrl?: string;
  /** Whether this server runs the cluster's host monitor and reconciler now (leader election). */
  isLeader(): boolean;
  /**
   * `wrenn up`: the platform host of the agent it runs in this process (its registration token
   * when it has no credentials yet); the proxy reaches that host's slots directly.
   */
  prepareLocalHost(opts: { registeredHostId?: string; address: string }): Promise<LocalHostPlan>;
  /** `wrenn up`: that agent did not start (a host that never registered goes). */
  abandonLocalHost(hostId: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Opens the database, the fleet (cluster keys, the static host of WRENN_AGENT_URL, connections to
 * registered hosts) and serves the API; the host monitor and reconciler run while this server leads.
 */
export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const fleetConfig = config.fleet ?? FLEET_DEFAULTS;
  // Checked before anything starts: a typo in WRENN_TRUSTED_PROXIES fails the start.
  const trustedProxies = new TrustedProxies(config.trustedProxies ?? []);
  const db = await openDatabase(config.database, logger);
  const admin = await bootstrapAdmin(db, config.dataDir);
  const tokens = new SessionTokens(config.jwtSecret ?? (await persistentJwtSecret(config.dataDir, logger)));
  const fleet = await openFleet(db, logger.child({ component: 'fleet' }), {
    staticAgentUrl: config.agentUrl || undefined,
    config: fleetConfig,
    refreshHooks: refreshHooksFor(config.testFault),
  });
  const hosts = fleet.directory;
  // Every path that destroys, pauses, resumes or snapshots a sandbox tells the proxy, which then
  // never hands that sandbox's kept-alive connections to whatever next has its address.
  const sandboxReleased = (sandboxId: string) => proxy.release(sandboxId);
  const sandboxStarted = (sandboxId: string) => void proxy.warm(sandboxId);
  const proxy = createSandboxProxy(
    {
      ...sandboxTraffic({
        db,
        hosts,
        logger,
        sandboxReleased,
        trafficToken: (sandboxId) => tokens.trafficToken(sandboxId),
      }),
      logger: logger.child({ component: 'proxy' }),
    },
    // Under the agent's 2 s reaper period, so even a 3 s timeout sees traffic as activity.
    { activityIntervalMs: 1000 },
  );
  const buildFiles = new BuildFiles(path.join(config.dataDir, 'build-files'));
  const buildQueue = await startBuildQueue(
    db,
    buildRunner(
      {
        db,
        hosts,
        sandboxReleased,
        files: buildFiles,
        logger: logger.child({ component: 'builds' }),
      },
      { ...RUNNER_DEFAULTS, timeoutMs: runnerTimeoutMs((config.builds ?? BUILD_DEFAULTS).timeoutSec) },
    ),
    { ...(config.builds ?? BUILD_DEFAULTS), logger: logger.child({ component: 'build-queue' }) },
  );
  // Read at scrape time only, once the server is up (`isLeader` is defined below).
  const metrics = new ServerMetrics({ db, logger, isLeader: () => isLeader() });
  const app = buildApp({
    metrics,
    db,
    tokens,
    hosts,
    fleet,
    logger,
    uploadMaxBytes: config.uploadMaxBytes,
    openSignup: config.openSignup ?? false,
    sandboxReleased,
    sandboxStarted,
    builds: { files: buildFiles, queue: buildQueue },
    dashboardDir: config.dashboardDir,
  });
  const leadership = startLeaderElection(config.database, logger.child({ component: 'leader' }), {
    retryMs: fleetConfig.leaderRetryMs,
  });
  const isLeader = () => leadership.isLeader();
  const reconciler = startReconciler(db, hosts, logger.child({ component: 'reconciler' }), {
    sandboxReleased,
    isLeader,
  });
  const monitor = startHostMonitor(db, logger.child({ component: 'host-monitor' }), {
    staleSec: fleetConfig.hostStaleSec,
    isLeader,
  });
  const replicas =
    fleetConfig.pausedReplicaAfterSec > 0
      ? startPausedReplicas(
          { db, hosts, logger: logger.child({ component: 'paused-replicas' }) },
          { afterSec: fleetConfig.pausedReplicaAfterSec, isLeader },
        )
      : undefined;
  const warmPools = startWarmPoolSync(
    { db, hosts, logger: logger.child({ component: 'warm-pools' }) },
    { isLeader },
  );
  const auditRetention = startAuditRetention(db, logger.child({ component: 'audit-retention' }), {
    retentionDays: config.auditRetentionDays ?? AUDIT_RETENTION_DEFAULT_DAYS,
    isLeader,
  });
  const server = await serveApp(app, config.listenHost, config.listenPort, proxy, { trustedProxies });
  const { port } = server.address() as AddressInfo;
  const url = `http://${formatHostPort(config.listenHost, port)}`;
  const metricsListener = await listenMetricsAt(config.metrics, metrics.registry, logger);
  logger.info(
    { url, database: config.database.kind, agent: config.agentUrl, metrics: metricsListener?.url },
    'control plane ready',
  );
  return {
    url,
    adminApiKey: admin?.apiKey,
    adminPassword: admin?.password,
    adminSecretFiles: adminSecretFiles(config.dataDir),
    metricsUrl: metricsListener?.url,
    isLeader,
    prepareLocalHost: (opts) => prepareLocalHost({ db, fleet, logger }, opts),
    abandonLocalHost: (hostId) => abandonLocalHost({ db, fleet, logger }, hostId),
    async stop() {
      await closeServer(server);
      await metricsListener?.close();
      await monitor.stop();
      await replicas?.stop();
      await warmPools.stop();
      await auditRetention.stop();
      await reconciler.stop();
      await buildQueue.stop();
      await leadership.stop();
      hosts.close();
      await db.destroy();
    },
  };
}
