import { readFileSync } from 'node:fs';
import { formatHostPort, type Logger } from '@wrenn/core';
import type { AgentConfig } from '../config.js';
import { HeartbeatLoop } from '../services/heartbeat.js';
import type { AgentServer } from './agent-server.js';
import { ControlPlaneClient } from './control-plane-client.js';
import { CredentialsStore, type HostCredentials } from './credentials-store.js';
import { CpuUsage, heartbeatReport, hostFacts } from './host-report.js';
import { Supervision, type PausableSandboxes } from './pause-all.js';
import { loadOrRegister } from './registration.js';
import { HostSession } from './token-refresh.js';

const AGENT_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/**
 * The credentials this agent serves with: stored, or obtained by registering now; undefined when it
 * runs unregistered. Refuses what cannot work: an unregistered agent beyond loopback (its API would
 * be open to anyone who reaches it), a registration without an address the control plane can dial.
 */
export async function hostCredentials(
  config: AgentConfig,
  logger: Logger,
): Promise<HostCredentials | undefined> {
  const { fleet } = config;
  const advertise = fleet.advertise ?? { host: config.listenHost, port: config.listenPort };
  const credentials = await loadOrRegister(
    {
      controlPlaneUrl: fleet.controlPlaneUrl,
      registrationToken: fleet.registrationToken,
      address: formatHostPort(advertise.host, advertise.port),
      agentVersion: AGENT_VERSION,
      facts: await hostFacts(config.dataDir),
    },
    CredentialsStore.in(config.dataDir),
    (url) => {
      if (advertise.port === 0 || isWildcard(advertise.host))
        throw new Error(
          `cannot register with address ${formatHostPort(advertise.host, advertise.port)}: the control plane must be able to dial it; set WRENN_ADVERTISE_ADDRESS (and a fixed WRENN_AGENT_LISTEN port)`,
        );
      return new ControlPlaneClient(url, requestTimeoutMs(config));
    },
    logger,
  );
  if (!credentials && !isLoopback(config.listenHost))
    throw new Error(
      `refusing to listen on ${config.listenHost} without credentials: an unregistered agent serves plain h2c to anyone, so it listens on loopback only. Register this host with its control plane (WRENN_CONTROL_PLANE_URL and WRENN_REGISTRATION_TOKEN from POST /v1/hosts), or listen on 127.0.0.1`,
    );
  return credentials;
}

/** Heartbeats to the control plane, refresh, and PauseAll when they fail for the grace period. */
export function startHeartbeats(
  config: AgentConfig,
  credentials: HostCredentials,
  server: AgentServer,
  sandboxes: PausableSandboxes,
  logger: Logger,
): HeartbeatLoop {
  const api = new ControlPlaneClient(credentials.controlPlaneUrl, requestTimeoutMs(config));
  const fleetLogger = logger.child({ component: 'fleet', hostId: credentials.hostId });
  const session = new HostSession(
    credentials,
    CredentialsStore.in(config.dataDir),
    api,
    (material) => {
      server.setTlsMaterial(material);
      fleetLogger.info('renewed TLS certificate in place');
    },
    fleetLogger,
  );
  const cpu = new CpuUsage();
  const supervision = new Supervision(config.fleet.heartbeatGrace);
  return new HeartbeatLoop(
    {
      session,
      api,
      report: () => heartbeatReport(config.dataDir, cpu, supervision.report(sandboxes.list())),
      sandboxes,
      supervision,
      logger: fleetLogger,
    },
    config.fleet.heartbeatSec,
  ).start();
}

// A call that takes longer than a heartbeat interval counts as failed (within 2–10 s).
function requestTimeoutMs(config: AgentConfig): number {
  return Math.min(Math.max(config.fleet.heartbeatSec * 1000, 2000), 10_000);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}
