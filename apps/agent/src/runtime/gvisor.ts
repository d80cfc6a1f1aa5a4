import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exec, ExecError, type Logger } from '@wrenn/core';
import type {
  RuntimeDriver,
  RuntimeMemory,
  RuntimeSandboxSpec,
  RuntimeSandboxState,
  RuntimeStats,
} from './driver.js';
import { MemoryThresholds } from './memory-thresholds.js';
import { savedMountOptions } from './checkpoint-header.js';
import { buildOciSpec, CPU_PERIOD_US, shmMountOptions } from './oci-spec.js';

export interface GvisorOptions {
  runscPath: string;
  /** runsc's state directory; every sandbox of this agent lives under it. */
  stateDir: string;
  platform: 'systrap' | 'ptrace';
  /** The cgroup (under each controller) that holds this agent instance's sandboxes: `wrenn` by default. */
  cgroupParent: string;
  /** The memory threshold helper (apps/agent/native/memwatch.c, built by `npm run build`). */
  memwatchPath: string;
  logger: Logger;
}

const MiB = 1024 * 1024;

const CGROUP_ROOT = '/sys/fs/cgroup';
const RUN_TIMEOUT_MS = 30_000;
// Writing a sandbox's memory to disk: generous, a large sandbox on a slow disk takes a while.
const CHECKPOINT_TIMEOUT_MS = 300_000;

/**
 * gVisor (`runsc`). Sandboxes run with netstack (`--network=sandbox`) in the slot's netns, and with
 * gVisor's own rootfs overlay off (`--overlay2=none`) so writes land in our overlayfs upper layer, on
 * the sandbox's disk image, where the disk limit applies and the host can measure them.
 */
export class GvisorDriver implements RuntimeDriver {
  readonly name = 'gvisor';

  private readonly thresholds: MemoryThresholds;

  private constructor(
    private readonly opts: GvisorOptions,
    private readonly canDisconnectOnSave: boolean,
  ) {
    this.thresholds = new MemoryThresholds(opts.memwatchPath, opts.logger.child({ component: 'memwatch' }));
  }

  /** Asks the installed runsc what it can do (older releases lack the flags checkpointing needs). */
  static async open(opts: GvisorOptions): Promise<GvisorDriver> {
    const { stdout, stderr } = await exec([opts.runscPath, 'flags'], { allowFailure: true });
    return new GvisorDriver(opts, /-net-disconnect-ok\b/.test(stdout + stderr));
  }

  private get globalFlags(): string[] {
    return [
      `--root=${this.opts.stateDir}`,
      `--platform=${this.opts.platform}`,
      '--network=sandbox',
      // Open TCP connections are dropped on checkpoint instead of making it fail (clients reconnect).
      ...(this.canDisconnectOnSave ? ['--net-disconnect-ok'] : []),
      '--overlay2=none',
    ];
  }

  async create(spec: RuntimeSandboxSpec, signal?: AbortSignal): Promise<{ pid: number }> {
    return this.startDetached(spec, ['run'], signal);
  }

  async restore(spec: RuntimeSandboxSpec, imageDir: string, signal?: AbortSignal): Promise<{ pid: number }> {
    // --background: memory pages load while the sandbox already runs, so restore time does not grow
    // with the sandbox's memory. /dev/shm is mounted as it was when the checkpoint was taken (one
    // taken before it was bounded stays unbounded), or runsc refuses the restore.
    const shmOptions = (await savedMountOptions(imageDir, '/dev/shm')) ?? shmMountOptions(spec.memoryMb);
    return this.startDetached(
      spec,
      ['restore', `--image-path=${imageDir}`, '--background'],
      signal,
      shmOptions,
    );
  }

  /** `runsc run|restore -detach`, with the bundle written first; resolves with the sandbox's pid. */
  private async startDetached(
    spec: RuntimeSandboxSpec,
    command: string[],
    signal?: AbortSignal,
    shmOptions?: string[],
  ): Promise<{ pid: number }> {
    await mkdir(spec.bundleDir, { recursive: true });
    await mkdir(this.opts.stateDir, { recursive: true });
    await writeFile(
      path.join(spec.bundleDir, 'config.json'),
      JSON.stringify(buildOciSpec(spec, this.opts.cgroupParent, shmOptions), null, 1),
    );
    // runsc's `-detach` hands its stdout/stderr down to the sandbox, which keeps them open for its
    // whole life: give it a log file (where envd's own output also lands) and wait for exit, not EOF.
    const pidFile = path.join(spec.bundleDir, 'pid');
    const log = await open(spec.logFile, 'a');
    try {
      const args = [
        ...this.globalFlags,
        ...command,
        '-bundle',
        spec.bundleDir,
        '-pid-file',
        pidFile,
        '-detach',
        spec.id,
      ];
      this.opts.logger.debug({ argv: [this.opts.runscPath, ...args] }, 'exec');
      const child = spawn(this.opts.runscPath, args, { stdio: ['ignore', log.fd, log.fd], signal });
      const exitCode = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
        child.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve(code);
        });
      });
      if (exitCode !== 0) {
        const tail = (await readFile(spec.logFile, 'utf8').catch(() => '')).slice(-2000);
        throw new ExecError([this.opts.runscPath, ...args], exitCode, tail);
      }
    } finally {
      await log.close();
    }
    // The pid file saves a `runsc state` round trip (tens of ms) on every start.
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`runsc wrote no valid pid to ${pidFile}`);
    return { pid };
  }

  checkpointSupport(): Promise<string | undefined> {
    if (this.canDisconnectOnSave) return Promise.resolve(undefined);
    return Promise.resolve(
      `the installed runsc (${this.opts.runscPath}) cannot checkpoint sandboxes with open network ` +
        'connections: it has no --net-disconnect-ok (gVisor added it in 2023). Install a current gVisor: ' +
        '`bash scripts/setup.sh` builds one from its Go module, or set WRENN_RUNSC to a runsc from ' +
        'https://gvisor.dev/docs/user_guide/install/',
    );
  }

  async checkpoint(id: string, imageDir: string, signal?: AbortSignal): Promise<void> {
    await mkdir(imageDir, { recursive: true });
    // Without --leave-running the sandbox stops at the moment of the save: nothing it does afterwards
    // can disagree with the image (its disk layer is saved alongside, unchanged from then on).
    await exec([this.opts.runscPath, ...this.globalFlags, 'checkpoint', `--image-path=${imageDir}`, id], {
      timeoutMs: CHECKPOINT_TIMEOUT_MS,
      signal,
      logger: this.opts.logger,
    });
  }

  async signal(id: string, signal: NodeJS.Signals): Promise<void> {
    await this.runsc(['kill', id, signal]);
  }

  async freeze(id: string): Promise<void> {
    await this.runsc(['pause', id]);
  }

  async thaw(id: string): Promise<void> {
    await this.runsc(['resume', id]);
  }

  async stats(id: string): Promise<RuntimeStats> {
    const cgroup = (controller: string, file: string) =>
      readFile(path.join(CGROUP_ROOT, controller, this.opts.cgroupParent, id, file), 'utf8');
    const [usage, memUsage, memStat] = await Promise.all([
      cgroup('cpuacct', 'cpuacct.usage'),
      cgroup('memory', 'memory.usage_in_bytes'),
      cgroup('memory', 'memory.stat'),
    ]);
    // Reclaimable file cache is not memory in use (the same rule as `docker stats`).
    const inactiveFile = Number(/^total_inactive_file (\d+)/m.exec(memStat)?.[1] ?? 0);
    return {
      cpuNs: Number(usage.trim()),
      memUsedBytes: Math.max(0, Number(memUsage.trim()) - inactiveFile),
    };
  }

  async limitCpu(id: string, vcpus: number): Promise<void> {
    const cpu = (file: string) => path.join(CGROUP_ROOT, 'cpu', this.opts.cgroupParent, id, file);
    await writeFile(cpu('cpu.cfs_period_us'), String(CPU_PERIOD_US));
    await writeFile(cpu('cpu.cfs_quota_us'), String(vcpus * CPU_PERIOD_US));
  }

  private memoryCgroup(id: string, file: string): string {
    return path.join(CGROUP_ROOT, 'memory', this.opts.cgroupParent, id, file);
  }

  async watchMemory(id: string, memoryMb: number, headroomMb: number, onCross: () => void): Promise<void> {
    // runsc gave the guest the cgroup's limit as its memory size at start (--total-memory) and never
    // reads it again: raising it now leaves the guest seeing `memoryMb`.
    await writeFile(this.memoryCgroup(id, 'memory.limit_in_bytes'), String((memoryMb + headroomMb) * MiB));
    await this.thresholds.watch(id, path.dirname(this.memoryCgroup(id, 'x')), memoryMb * MiB, onCross);
  }

  unwatchMemory(id: string): Promise<void> {
    return this.thresholds.unwatch(id);
  }

  async memory(id: string): Promise<RuntimeMemory | undefined> {
    try {
      const [usage, stat] = await Promise.all([
        readFile(this.memoryCgroup(id, 'memory.usage_in_bytes'), 'utf8'),
        readFile(this.memoryCgroup(id, 'memory.stat'), 'utf8'),
      ]);
      const field = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(stat)?.[1] ?? 0);
      // gVisor's memory file is shared memory (on the anon LRU): only the file LRU is cache.
      const fileCache = field('total_active_file') + field('total_inactive_file');
      const chargedBytes = Number(usage.trim());
      return { chargedBytes, inUseBytes: Math.max(0, chargedBytes - fileCache) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async reclaimCache(id: string): Promise<void> {
    // With tasks in the cgroup, force_empty reclaims what it can (file cache; the rest has no swap
    // to go to) and returns.
    await writeFile(this.memoryCgroup(id, 'memory.force_empty'), '0');
  }

  async exitReason(id: string): Promise<string> {
    return (await this.wasOomKilled(id))
      ? 'out of memory: the sandbox went past its memory limit'
      : 'the sandbox exited unexpectedly';
  }

  async hasExited(id: string): Promise<boolean> {
    const { exitCode, stdout } = await this.runsc(['state', id], true);
    if (exitCode !== 0) return true;
    return (JSON.parse(stdout) as { status?: string }).status !== 'running';
  }

  async wasOomKilled(id: string): Promise<boolean> {
    const file = this.memoryCgroup(id, 'memory.oom_control');
    const oomControl = await readFile(file, 'utf8').catch(() => '');
    return Number(/^oom_kill (\d+)/m.exec(oomControl)?.[1] ?? 0) > 0;
  }

  async destroy(id: string): Promise<void> {
    // No watch outlives its sandbox, whoever destroys it (a failed start's undo, the janitor).
    await this.thresholds.unwatch(id);
    // Nothing in runsc's state dir names the sandbox (a checkpoint removes it): a `runsc delete`
    // would only spend ~100 ms to say so.
    const entries = await readdir(this.opts.stateDir).catch(() => [] as string[]);
    if (!entries.some((entry) => entry.includes(id))) return removeCgroups(this.opts.cgroupParent, id);
    // `delete --force` kills the sandbox's processes and removes its state and cgroups.
    const { exitCode, stderr } = await this.runsc(['delete', '--force', id], true);
    if (exitCode !== 0 && !/does not exist|not found|cannot load/i.test(stderr)) {
      throw new ExecError([this.opts.runscPath, 'delete', '--force', id], exitCode, stderr);
    }
    await removeCgroups(this.opts.cgroupParent, id);
  }

  async list(): Promise<string[]> {
    const { stdout } = await this.runsc(['list', '--format=json'], true);
    const parsed = JSON.parse(stdout.trim() || 'null') as { id: string }[] | null;
    return (parsed ?? []).map((c) => c.id);
  }

  async inspect(id: string): Promise<RuntimeSandboxState | undefined> {
    const { exitCode, stdout } = await this.runsc(['state', id], true);
    if (exitCode !== 0) return undefined;
    const state = JSON.parse(stdout) as { status?: string; pid?: number; bundle?: string };
    const status = state.status;
    if (status !== 'running' && status !== 'paused' && status !== 'stopped' && status !== 'created')
      return { status: 'stopped', pid: 0 };
    // The namespace the sandbox was started in is in its bundle's spec: the truth about its slot.
    let netnsPath: string | undefined;
    if (state.bundle) {
      const spec = await readFile(path.join(state.bundle, 'config.json'), 'utf8').catch(() => '{}');
      const parsed = JSON.parse(spec) as { linux?: { namespaces?: { type: string; path?: string }[] } };
      netnsPath = parsed.linux?.namespaces?.find((ns) => ns.type === 'network')?.path;
    }
    return { status, pid: state.pid ?? 0, netnsPath };
  }

  async waitForCommands(id: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const commands = await runscCommandsFor(this.opts.stateDir, this.opts.runscPath, id);
      if (!commands.length) return true;
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async removeLeftovers(keep: ReadonlySet<string> = new Set()): Promise<void> {
    const ids = (await this.list().catch(() => [] as string[])).filter((id) => !keep.has(id));
    for (const id of ids) {
      await this.destroy(id).catch((err: unknown) =>
        this.opts.logger.warn({ err, id }, 'could not delete leftover sandbox'),
      );
    }
    // Processes whose state runsc lost (killed mid-create): find them by our --root flag. An adopted
    // sandbox's own processes (sandbox, gofer: the container id is their last argument) stay.
    const pids = await runscPidsUsingRoot(this.opts.stateDir, (argv) => !keep.has(argv.at(-1) ?? ''));
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const id of await listCgroups(this.opts.cgroupParent))
      if (!keep.has(id)) await removeCgroups(this.opts.cgroupParent, id);
    if (ids.length || pids.length) this.opts.logger.warn({ ids, pids }, 'removed leftover runsc sandboxes');
  }

  private runsc(args: string[], allowFailure = false) {
    return exec([this.opts.runscPath, ...this.globalFlags, ...args], {
      allowFailure,
      timeoutMs: 30_000,
      logger: this.opts.logger,
    });
  }
}

/** Pids of runsc processes (any of run/boot/gofer) started with the given state dir. */
export async function runscPidsUsingRoot(
  stateDir: string,
  which: (argv: string[]) => boolean = () => true,
): Promise<number[]> {
  const flag = `--root=${stateDir}`;
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const argv = cmdline.split('\0').filter(Boolean);
    if (argv.includes(flag) && which(argv)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * runsc commands (not the sandbox's own `runsc-sandbox`/`runsc-gofer` processes) working on one
 * sandbox: a checkpoint or restore outlives the agent that started it, and finishes on its own.
 */
async function runscCommandsFor(stateDir: string, runscPath: string, id: string): Promise<number[]> {
  return runscPidsUsingRoot(stateDir, (argv) => argv[0] === runscPath && argv.at(-1) === id);
}

async function listCgroups(parent: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    const entries = await readdir(path.join(CGROUP_ROOT, controller, parent), { withFileTypes: true }).catch(
      () => [],
    );
    for (const entry of entries) if (entry.isDirectory()) ids.add(entry.name);
  }
  return [...ids];
}

/**
 * Removes the sandbox's cgroups. A cgroup that still holds tasks (a runsc killed mid-start leaves its
 * sandbox and gofer exiting, or running) cannot be removed: everything in it belongs to this sandbox,
 * so it is killed, and the removal retried for up to 5 s.
 */
async function removeCgroups(parent: string, id: string): Promise<void> {
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    const dir = path.join(CGROUP_ROOT, controller, parent, id);
    const deadline = Date.now() + 5000;
    for (;;) {
      const err = await rmdir(dir).then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      if (!err || err.code !== 'EBUSY' || Date.now() > deadline) break;
      const procs = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
      for (const pid of procs.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
