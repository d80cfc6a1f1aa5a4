import type { RuntimeSandboxSpec } from './driver.js';

// Capabilities inside the sandbox (gVisor's kernel enforces them, not the host's): what a container
// normally has, so envd can switch users, own files and signal processes.
const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const CPU_PERIOD_US = 100_000;

/**
 * The host-side pids limit for a guest task limit. Under systrap each guest task costs about two host
 * tasks (measured: 50 guest processes added 103), and the runtime has ~40 of its own plus threads it
 * starts under load; the host limit only has to stop a guest that lifted its own limit.
 */
export const hostTaskLimit = (guestTasks: number) => guestTasks * 8 + 1024;

/**
 * /dev/shm's mount options. Bounded at half the sandbox's memory, as Linux bounds a tmpfs by default:
 * what fills it is memory no process holds, so past the sandbox's memory nothing could be killed to
 * save it and the host would end the whole sandbox; bounded, the write fails with ENOSPC instead.
 */
export const shmMountOptions = (memoryMb: number) => [
  'nosuid',
  'noexec',
  'nodev',
  'mode=1777',
  `size=${Math.max(1, Math.floor(memoryMb / 2))}m`,
];

/**
 * The OCI runtime spec of a sandbox. Resource limits become cgroups under /<cgroupParent>/<id>
 * (`wrenn` for the default agent instance). `shmOptions` differ from the default only for a restore,
 * which must mount /dev/shm as the checkpoint was taken with.
 */
export function buildOciSpec(
  spec: RuntimeSandboxSpec,
  cgroupParent = 'wrenn',
  shmOptions = shmMountOptions(spec.memoryMb),
): object {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: spec.init.args,
      env: spec.init.env,
      cwd: spec.init.cwd,
      capabilities: {
        bounding: CAPABILITIES,
        effective: CAPABILITIES,
        permitted: CAPABILITIES,
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }],
      noNewPrivileges: false,
    },
    root: { path: spec.rootfs, readonly: false },
    hostname: spec.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: shmOptions,
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      // gVisor's own cgroups, where envd sets the guest's task limit at start.
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev'],
      },
      ...spec.mounts.map((m) => ({
        destination: m.destination,
        type: 'bind',
        source: m.source,
        options: ['rbind', m.readonly ? 'ro' : 'rw'],
      })),
    ],
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'network', path: spec.netnsPath },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
      ],
      cgroupsPath: `/${cgroupParent}/${spec.id}`,
      resources: {
        memory: { limit: spec.memoryMb * 1024 * 1024 },
        // No CPU quota yet: a boot or restore runs on every core, and the agent sets the sandbox's
        // `vcpus` (`limitCpu`) once envd answers. Node starting inside gVisor needs ~1.5 cores for
        // ~0.3 s (the sentry's work counts in the same cgroup): held to one, envd took 0.75 s
        // instead of 0.47 (docs/performance.md).
        pids: { limit: hostTaskLimit(spec.pidsLimit) },
      },
    },
  };
}
