import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { errorMessage, parseCidrList, parseConfig, parseHostPort } from '@wrenn/core';
import { parseMetricsAddress, type MetricsAddress } from '@wrenn/core/metrics';

/** An instance tag: short enough that `wrn<tag>-<slot>` fits Linux's 15-character interface names. */
export const INSTANCE_PATTERN = /^[a-z][a-z0-9]{0,3}$/;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// Every setting of the agent, with its default. Parsed once in main; nothing else reads process.env.
const shape = {
  WRENN_DIR: z.string().default('/var/lib/wrenn'),
  // Template images; separate so several data dirs (tests) can share one built image.
  WRENN_IMAGES_DIR: z.string().optional(),
  WRENN_AGENT_LISTEN: z.string().default('127.0.0.1:7070'),
  // Prometheus `/metrics` (HTTP/1.1, a listener of its own; docs/observability.md): loopback by
  // default, `off` for none. A default address that is taken only turns metrics off.
  WRENN_AGENT_METRICS_LISTEN: z.string().default('127.0.0.1:9471'),
  WRENN_RUNSC: z.string().optional(),
  WRENN_ENVD_DIR: z.string().default(path.join(repoRoot, 'apps/envd/dist')),
  WRENN_NODE: z.string().default(process.execPath),
  WRENN_TINI: z.string().default('/usr/bin/tini-static'),
  // The memory threshold helper (apps/agent/native/memwatch.c), built by `npm run build`.
  WRENN_MEMWATCH: z.string().default(path.join(repoRoot, 'apps/agent/dist/wrenn-memwatch')),
  // Host-side transit addresses: one /30 per slot.
  WRENN_SLOT_SUBNET: z.string().default('10.12.0.0/16'),
  // Destinations sandboxes may not reach (the host's LAN, link-local metadata, carrier NAT).
  WRENN_EGRESS_DENY: z
    .string()
    .default('10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,100.64.0.0/10'),
  // A sandbox whose egress policy allows names gets its DNS answered by the agent, on this UDP port
  // of its slot's host address (docs/network.md); the host's firewall lets slots reach it.
  WRENN_EGRESS_DNS_PORT: z.coerce.number().int().min(1).max(65535).default(49953),
  // Resolvers (`host:port`, comma-separated) the agent looks allowed names up with; default: the
  // host's. Tests point it at a DNS server of their own.
  WRENN_EGRESS_RESOLVER: z.string().default(''),
  // Nameservers written into each sandbox's resolv.conf; default: the host's non-loopback ones.
  WRENN_SANDBOX_NAMESERVERS: z.string().optional(),
  WRENN_MAX_SANDBOXES: z.coerce.number().int().positive().default(256),
  WRENN_MAX_DISK_MB: z.coerce.number().int().positive().default(65536),
  // Processes and threads a sandbox may have at once (a fork bomb stops here, not at the host's limit).
  WRENN_SANDBOX_PIDS_LIMIT: z.coerce.number().int().min(16).max(65536).default(1024),
  WRENN_RUNSC_PLATFORM: z.enum(['systrap', 'ptrace']).default('systrap'),
  // A short tag naming this agent's host resources (netns, interfaces, firewall chains, cgroups), so
  // several agents share one machine without one's janitor touching another's. Unset: the default
  // instance, with the plain names.
  WRENN_INSTANCE: z
    .string()
    .regex(INSTANCE_PATTERN, 'expected 1 to 4 lowercase letters and digits, starting with a letter')
    .optional(),
  // The fleet (docs/fleet.md). Without a control plane and without stored credentials the agent
  // speaks h2c on loopback only.
  WRENN_CONTROL_PLANE_URL: z.url({ protocol: /^https?$/ }).optional(),
  WRENN_REGISTRATION_TOKEN: z.string().min(1).optional(),
  // The host:port the control plane dials (default: the listen address).
  WRENN_ADVERTISE_ADDRESS: z.string().optional(),
  WRENN_HEARTBEAT_SEC: z.coerce.number().positive().max(3600).default(30),
  // Heartbeats that may fail in a row before the agent pauses every sandbox (PauseAll).
  WRENN_HEARTBEAT_GRACE: z.coerce.number().int().min(1).max(100).default(3),
  // Warm pools at start (docs/warm-pool.md): `template=size,…`, e.g. `base=2,mysnap=1`. SetWarmPool
  // changes them while the agent runs. Unset: none.
  WRENN_WARM_POOL: z.string().default(''),
  // Network slots kept built ahead of need (docs/network.md): every start takes one instead of
  // building its own (~70 ms of process starts). 0: none.
  WRENN_PREPARED_SLOTS: z.coerce.number().int().min(0).max(64).default(2),
  // ImportImage (docs/templates.md): registries the agent may reach over plain HTTP (and without
  // verifying TLS), `host:port` or `host`, comma-separated. None by default, loopback included: a
  // caller's image reference would otherwise reach any HTTP service on this host.
  WRENN_INSECURE_REGISTRIES: z.string().default(''),
  // How long one ImportImage may take, pull and unpack together.
  WRENN_IMAGE_IMPORT_TIMEOUT_SEC: z.coerce.number().int().min(10).max(86400).default(1800),
  // What SIGTERM/SIGINT do to running sandboxes: `destroy` them (a clean host), or `keep` them
  // running for the next agent on this data dir to adopt (an upgrade; docs/reliability.md).
  WRENN_AGENT_ON_STOP: z.enum(['destroy', 'keep']).default('destroy'),
  LOG_LEVEL: z.string().default('info'),
};

export interface AgentConfig {
  dataDir: string;
  imagesDir: string;
  listenHost: string;
  listenPort: number;
  /** Where `/metrics` listens; undefined: nowhere. */
  metrics?: MetricsAddress;
  runscPath: string;
  envdDir: string;
  nodePath: string;
  tiniPath: string;
  memwatchPath: string;
  slotSubnet: { base: number; prefix: number };
  egressDeny: string[];
  /** The slots' DNS for policies that allow names (network/slot-egress.ts). */
  egressResolver: { dnsPort: number; upstream: string[] };
  nameservers: string[];
  maxSandboxes: number;
  pidsLimit: number;
  limits: { maxVcpus: number; maxMemoryMb: number; maxDiskMb: number };
  platform: 'systrap' | 'ptrace';
  /** Undefined: the default instance (plain names). */
  instance: string | undefined;
  fleet: FleetConfig;
  /** Ready sandboxes to keep per template from the start (`WRENN_WARM_POOL`). */
  warmPool: { template: string; size: number }[];
  /** Network slots to keep built ahead (`WRENN_PREPARED_SLOTS`). */
  preparedSlots: number;
  images: { insecureRegistries: string[]; importTimeoutSec: number };
  /** At SIGTERM/SIGINT: destroy running sandboxes, or leave them for the next agent to adopt. */
  onStop: 'destroy' | 'keep';
  logLevel: string;
}

export interface FleetConfig {
  /** Where the control plane's API is; undefined when none was given (then only stored credentials name it). */
  controlPlaneUrl: string | undefined;
  registrationToken: string | undefined;
  /** The address the control plane dials; undefined: the address the agent listens on. */
  advertise: { host: string; port: number } | undefined;
  heartbeatSec: number;
  heartbeatGrace: number;
}

export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const raw = parseConfig(shape, env);
  const listen = setting('WRENN_AGENT_LISTEN', () =>
    parseHostPort(raw.WRENN_AGENT_LISTEN, { allowZero: true }),
  );
  const [subnet] = setting('WRENN_SLOT_SUBNET', () =>
    parseCidrList(raw.WRENN_SLOT_SUBNET, { family: 'ipv4' }),
  );
  const [subnetAddr = '', subnetPrefix] = (subnet ?? '').split('/');
  const prefix = Number(subnetPrefix);
  if (!subnet || prefix < 8 || prefix > 28) {
    throw new Error(
      `invalid configuration: WRENN_SLOT_SUBNET: expected a.b.c.d/8..28, got ${raw.WRENN_SLOT_SUBNET}`,
    );
  }
  return {
    dataDir: raw.WRENN_DIR,
    imagesDir: raw.WRENN_IMAGES_DIR ?? path.join(raw.WRENN_DIR, 'images'),
    listenHost: listen.host,
    listenPort: listen.port,
    metrics: setting('WRENN_AGENT_METRICS_LISTEN', () =>
      parseMetricsAddress(raw.WRENN_AGENT_METRICS_LISTEN, env.WRENN_AGENT_METRICS_LISTEN !== undefined),
    ),
    runscPath: raw.WRENN_RUNSC ?? findRunsc(raw.WRENN_DIR),
    envdDir: raw.WRENN_ENVD_DIR,
    nodePath: raw.WRENN_NODE,
    tiniPath: raw.WRENN_TINI,
    memwatchPath: raw.WRENN_MEMWATCH,
    slotSubnet: { base: ipv4ToInt(subnetAddr), prefix },
    // IPv4 only: the firewall's rules are IPv4 and sandboxes have no IPv6.
    egressDeny: setting('WRENN_EGRESS_DENY', () => parseCidrList(raw.WRENN_EGRESS_DENY, { family: 'ipv4' })),
    egressResolver: {
      dnsPort: raw.WRENN_EGRESS_DNS_PORT,
      upstream: setting('WRENN_EGRESS_RESOLVER', () =>
        splitList(raw.WRENN_EGRESS_RESOLVER).map((entry) => {
          const { host, port } = parseHostPort(entry.includes(':') ? entry : `${entry}:53`);
          return `${host}:${port}`;
        }),
      ),
    },
    nameservers:
      raw.WRENN_SANDBOX_NAMESERVERS === undefined
        ? hostNameservers()
        : splitList(raw.WRENN_SANDBOX_NAMESERVERS),
    maxSandboxes: raw.WRENN_MAX_SANDBOXES,
    pidsLimit: raw.WRENN_SANDBOX_PIDS_LIMIT,
    limits: {
      maxVcpus: os.availableParallelism(),
      maxMemoryMb: Math.floor(os.totalmem() / 1024 / 1024),
      maxDiskMb: raw.WRENN_MAX_DISK_MB,
    },
    platform: raw.WRENN_RUNSC_PLATFORM,
    instance: raw.WRENN_INSTANCE,
    fleet: {
      controlPlaneUrl: raw.WRENN_CONTROL_PLANE_URL?.replace(/\/+$/, ''),
      registrationToken: raw.WRENN_REGISTRATION_TOKEN,
      advertise:
        raw.WRENN_ADVERTISE_ADDRESS === undefined
          ? undefined
          : setting('WRENN_ADVERTISE_ADDRESS', () => parseHostPort(raw.WRENN_ADVERTISE_ADDRESS ?? '')),
      heartbeatSec: raw.WRENN_HEARTBEAT_SEC,
      heartbeatGrace: raw.WRENN_HEARTBEAT_GRACE,
    },
    warmPool: setting('WRENN_WARM_POOL', () => parseWarmPool(raw.WRENN_WARM_POOL)),
    preparedSlots: raw.WRENN_PREPARED_SLOTS,
    images: {
      insecureRegistries: setting('WRENN_INSECURE_REGISTRIES', () =>
        parseRegistryList(raw.WRENN_INSECURE_REGISTRIES),
      ),
      importTimeoutSec: raw.WRENN_IMAGE_IMPORT_TIMEOUT_SEC,
    },
    onStop: raw.WRENN_AGENT_ON_STOP,
    logLevel: raw.LOG_LEVEL,
  };
}

const WARM_POOL_ENTRY = /^([a-z0-9][a-z0-9_-]{0,62})=(\d{1,2})$/;

/** `base=2,mysnap=1` → one entry per template (sizes 0 to 64, each template once). */
export function parseWarmPool(value: string): { template: string; size: number }[] {
  const entries = splitList(value).map((item) => {
    const m = WARM_POOL_ENTRY.exec(item);
    if (!m || Number(m[2]) > 64)
      throw new Error(`expected template=size (size 0 to 64), comma-separated, got ${JSON.stringify(item)}`);
    return { template: m[1]!, size: Number(m[2]) };
  });
  const seen = new Set<string>();
  for (const { template } of entries) {
    if (seen.has(template)) throw new Error(`template ${template} is named twice`);
    seen.add(template);
  }
  return entries;
}

const REGISTRY_HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/;

/** `127.0.0.1:5000, registry.lan` → the registries as written (host, or host:port). */
export function parseRegistryList(value: string): string[] {
  const entries = splitList(value);
  for (const entry of entries)
    if (!REGISTRY_HOST.test(entry))
      throw new Error(`expected host or host:port, got ${JSON.stringify(entry)}`);
  return entries;
}

/** A setting's parsed value; a parse failure becomes an error naming the setting. */
function setting<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new Error(`invalid configuration: ${name}: ${errorMessage(err)}`);
  }
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

// The runsc that scripts/setup.sh installs, else whatever is on PATH.
function findRunsc(dataDir: string): string {
  const installed = path.join(dataDir, 'bin/runsc');
  return existsSync(installed) ? installed : 'runsc';
}

function hostNameservers(): string[] {
  try {
    const text = readFileSync('/etc/resolv.conf', 'utf8');
    return [...text.matchAll(/^nameserver\s+(\S+)/gm)]
      .map((m) => m[1] ?? '')
      .filter((ns) => ns && !ns.startsWith('127.') && ns !== '::1');
  } catch {
    return [];
  }
}

export function ipv4ToInt(addr: string): number {
  const parts = addr.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${addr}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
