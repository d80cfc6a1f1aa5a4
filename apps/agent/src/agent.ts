import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { Code, ConnectError, exec, PeriodicTask, type Logger } from '@wrenn/core';
import { listenMetricsAt } from '@wrenn/core/metrics';
import { hostagent } from '@wrenn/contracts';
import type { AgentConfig } from './config.js';
import { GvisorDriver } from './runtime/gvisor.js';
import { HostFirewall } from './network/host-firewall.js';
import { SlotAllocator } from './network/slot-allocator.js';
import { slotCapacity } from './network/addresses.js';
import { SlotNetwork } from './network/slot-network.js';
import { intToIpv4 } from './config.js';
import { InstanceNames } from './instance-names.js';
import { listenAgentServer } from './fleet/agent-server.js';
import { tlsMaterialOf } from './fleet/credentials-store.js';
import { hostCredentials, startHeartbeats } from './fleet/fleet-member.js';
import { DataLayout } from './storage/layout.js';
import { EnvdRuntimeBundle } from './storage/envd-runtime.js';
import { ImageImporter } from './storage/image-importer.js';
import { TemplateStore } from './storage/templates.js';
import { SandboxManager } from './sandbox/manager.js';
import { hostAgentService, MAX_UNARY_FILE_BYTES } from './rpc/host-agent-service.js';
import { callContext } from './rpc/call-context.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { releaseRuntimeState, removeLeftovers } from './services/janitor.js';
import { pauseExpired, REAPER_INTERVAL_MS } from './services/reaper.js';
import { METRICS_INTERVAL_MS, sampleMetrics } from './services/sampler.js';
import { reapDead, WATCHDOG_INTERVAL_MS } from './services/watchdog.js';

// How often the warm pools are checked for a refill when none is running.
const WARM_POOL_INTERVAL_MS = 200;

export interface RunningAgent {
  /** http://host:port of the Connect RPC server (https:// when registered: mutual TLS). */
  url: string;
  /** The id the control plane knows this host by; undefined when unregistered. */
  hostId: string | undefined;
  /** http://host:port/metrics (Prometheus); undefined when metrics are off. */
  metricsUrl: string | undefined;
  manager: SandboxManager;
  stop(): Promise<void>;
}

/** Builds the agent from its config, cleans up after any predecessor, and starts serving. */
export async function startAgent(config: AgentConfig, logger: Logger): Promise<RunningAgent> {
  await checkPrerequisites(config);
  const layout = new DataLayout(config.dataDir, config.imagesDir);
  await mkdir(layout.sandboxesDir, { recursive: true });
  await mkdir(layout.runscRoot, { recursive: true });
  // Before anything on the host changes: an agent that may not serve stops here.
  const credentials = await hostCredentials(config, logger);

  const names = new InstanceNames(config.instance);
  const runtime = await GvisorDriver.open({
    runscPath: config.runscPath,
    stateDir: layout.runscRoot,
    platform: config.platform,
    cgroupParent: names.cgroupParent,
    memwatchPath: config.memwatchPath,
    logger: logger.child({ component: 'runtime' }),
  });
  const subnet = `${intToIpv4(config.slotSubnet.base)}/${config.slotSubnet.prefix}`;
  const firewall = new HostFirewall(
    names,
    subnet,
    config.egressDeny,
    logger.child({ component: 'firewall' }),
    config.egressResolver.dnsPort,
  );
  const network = new SlotNetwork(names, logger.child({ component: 'network' }), config.egressResolver);
  const templates = new TemplateStore(layout);

  const envdRuntime = new EnvdRuntimeBundle({
    nodePath: config.nodePath,
    envdDir: config.envdDir,
    dir: layout.envdRuntimeDir,
    logger,
  });
  const manager = new SandboxManager({
    config,
    layout,
    templates,
    runtime,
    network,
    // Prepared slots hold indexes of their own: a host full of sandboxes still has them to take.
    slots: new SlotAllocator(
      Math.min(slotCapacity(config.slotSubnet.prefix), config.maxSandboxes + config.preparedSlots),
    ),
    envdRuntime,
    logger,
  });
  const images = new ImageImporter({
    templates,
    envdRuntime,
    insecureRegistries: config.images.insecureRegistries,
    timeoutSec: config.images.importTimeoutSec,
    logger: logger.child({ component: 'image-import' }),
  });

  // What a previous agent left: its sandboxes become this agent's (running where they run, paused on
  // disk); the janitor removes everything no adopted sandbox holds.
  await manager.recoverAfterRestart((kept) =>
    removeLeftovers({ runtime, network, firewall, layout, templates, logger }, kept),
  );
  await firewall.install();
  for (const { template, size } of config.warmPool) await manager.setWarmPool(template, size);

  const { ctx } = manager;
  const tasks = [
    // Warm pools: one refill at a time, only while no create or resume waits (sandbox/warm-pool.ts).
    new PeriodicTask('warm-pool', WARM_POOL_INTERVAL_MS, () => manager.pool.refillOnce(), logger),
    // After the recovery above: an adopted sandbox's slot index is reserved before any is built.
    new PeriodicTask(
      'prepared-slots',
      WARM_POOL_INTERVAL_MS,
      () => manager.preparedSlots.refillOnce(),
      logger,
    ),
    // Notices sandboxes that died on their own (host OOM kill, runtime crash) so callers get the reason.
    new PeriodicTask('watchdog', WATCHDOG_INTERVAL_MS, () => reapDead(ctx), logger),
    new PeriodicTask('ttl-reaper', REAPER_INTERVAL_MS, () => pauseExpired(ctx), logger),
    new PeriodicTask('metrics', METRICS_INTERVAL_MS, () => sampleMetrics(ctx), logger),
  ].map((task) => task.start());

  const metrics = new AgentMetrics(manager);
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(hostagent.HostAgentService, hostAgentService(manager, templates, config, images)),
    readMaxBytes: MAX_UNARY_FILE_BYTES + 1024 * 1024,
    interceptors: [
      // Outermost: it sees the answer the caller gets, and its log context covers the others.
      callContext(metrics),
      (next) => async (req) => {
        try {
          return await next(req);
        } catch (err) {
          throw publicError(err, req.method.name, logger);
        }
      },
    ],
  });
  const server = await listenAgentServer({
    host: config.listenHost,
    port: config.listenPort,
    handler,
    tunnels: manager,
    tls: credentials && tlsMaterialOf(credentials),
    logger,
  });
  const { url } = server;
  const metricsListener = await listenMetricsAt(config.metrics, metrics.registry, logger).catch(
    async (err: unknown) => {
      await server.close();
      throw err;
    },
  );
  const heartbeats = credentials && startHeartbeats(config, credentials, server, manager, logger);
  logger.info(
    {
      url,
      runsc: config.runscPath,
      dataDir: config.dataDir,
      instance: config.instance,
      hostId: credentials?.hostId,
      metrics: metricsListener?.url,
    },
    'host agent ready',
  );

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const keep = config.onStop === 'keep';
      logger.info(
        keep ? 'stopping: sandboxes keep running for the next agent' : 'stopping: destroying sandboxes',
      );
      await heartbeats?.stop();
      await server.close();
      await metricsListener?.close();
      // Pooled sandboxes are no one's: they go first (a refill in flight is cut short), and so do
      // the slots built ahead, in either mode.
      await Promise.all([manager.pool.stop(), manager.preparedSlots.stop()]);
      // A pause the reaper started finishes before the sandboxes go: never half a pause.
      await Promise.all(tasks.map((task) => task.stop()));
      if (keep) {
        // Running sandboxes, their slots, mounts and rules (and runsc's state mounts) stay as they
        // are, recorded in their sandbox.json; only work in flight is let finish.
        await Promise.allSettled(manager.ctx.registry.records().map((r) => r.teardown ?? Promise.resolve()));
        logger.info('stopped');
        return;
      }
      await manager.destroyAll();
      await firewall.remove();
      await releaseRuntimeState(layout, logger);
      logger.info('stopped');
    })());
  return { url, hostId: credentials?.hostId, metricsUrl: metricsListener?.url, manager, stop };
}

// Failures that are not ConnectErrors are bugs or host trouble: log the cause, answer generically.
function publicError(err: unknown, method: string, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  logger.error({ err, method }, 'internal error');
  return new ConnectError(`internal error in ${method}`, Code.Internal);
}

async function checkPrerequisites(config: AgentConfig): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the host agent must run as root (it manages namespaces, mounts and runsc)');
  const runsc = await exec([config.runscPath, '--version'], { allowFailure: true }).catch(() => undefined);
  if (!runsc || runsc.exitCode !== 0) {
    throw new Error(
      `runsc not found at ${config.runscPath}: run scripts/setup.sh (it installs one) or set WRENN_RUNSC`,
    );
  }
  for (const [what, file] of [
    ['envd bundle', path.join(config.envdDir, 'envd.mjs')],
    ['tini', config.tiniPath],
    ['node', config.nodePath],
    // Without it a process that outgrows its sandbox would take the whole sandbox down.
    ['memory watch helper (npm run build)', config.memwatchPath],
  ] as const) {
    if (!existsSync(file)) throw new Error(`${what} not found at ${file}: run scripts/setup.sh`);
  }
}
