import { ENVD_PORT } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import type { NetworkSlot } from '../network/addresses.js';
import type { RuntimeSandboxSpec } from '../runtime/driver.js';
import { EnvdRuntimeBundle } from '../storage/envd-runtime.js';
import type { SandboxPaths } from '../storage/layout.js';
import type { SandboxInfo } from './record.js';

// Paths inside every sandbox where the agent provides envd and its runtime (read-only).
const GUEST_DIR = '/opt/wrenn';

/**
 * How envd runs: on the host's `node` and the image's glibc (`base`; this mount set is frozen into
 * every checkpoint taken with it), or from a bundle of node and its libraries (imported images,
 * whatever their libc: storage/envd-runtime.ts).
 */
export type EnvdStart = { runtime: 'host' } | { runtime: 'bundled'; dir: string };

/**
 * The runtime spec of a sandbox. Boot and restore use the same one: a checkpoint restores only into
 * the mount layout it was taken with (the sources may move, the destinations may not).
 */
export function guestRuntimeSpec(
  config: AgentConfig,
  paths: SandboxPaths,
  slot: NetworkSlot,
  info: SandboxInfo,
  /** The runtime's name for the sandbox (its directory's name): its id, or a pooled one's. */
  runtimeId: string,
  envd: EnvdStart = { runtime: 'host' },
): RuntimeSandboxSpec {
  const envdEntry = `${GUEST_DIR}/envd/envd.mjs`;
  const [nodeMount, envdCommand] =
    envd.runtime === 'host'
      ? [
          { source: config.nodePath, destination: `${GUEST_DIR}/bin/node`, readonly: true },
          [`${GUEST_DIR}/bin/node`, envdEntry],
        ]
      : [
          { source: envd.dir, destination: `${GUEST_DIR}/runtime`, readonly: true },
          EnvdRuntimeBundle.command(`${GUEST_DIR}/runtime`, envdEntry),
        ];
  return {
    id: runtimeId,
    rootfs: paths.rootfs,
    bundleDir: paths.bundle,
    logFile: paths.runtimeLog,
    netnsPath: slot.netnsPath,
    vcpus: info.vcpus,
    memoryMb: info.memoryMb,
    pidsLimit: config.pidsLimit,
    hostname: 'wrenn',
    mounts: [
      nodeMount,
      { source: config.tiniPath, destination: `${GUEST_DIR}/bin/tini`, readonly: true },
      { source: config.envdDir, destination: `${GUEST_DIR}/envd`, readonly: true },
      // An explicit /tmp also keeps gVisor from putting a memory-backed tmpfs there.
      { source: paths.tmp, destination: '/tmp', readonly: false },
      { source: paths.resolvConf, destination: '/etc/resolv.conf', readonly: false },
      { source: paths.hosts, destination: '/etc/hosts', readonly: false },
    ],
    init: {
      args: [`${GUEST_DIR}/bin/tini`, '--', ...envdCommand],
      env: [
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'HOME=/root',
        `ENVD_PORT=${ENVD_PORT}`,
        `ENVD_TASKS_MAX=${config.pidsLimit}`,
      ],
      cwd: '/',
    },
  };
}
