import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exec, ExecError, type Logger } from '@wrenn/core';
import type { RuntimeDriver, RuntimeSandboxSpec } from './driver.js';
import { buildOciSpec } from './oci-spec.js';

export interface GvisorOptions {
  runscPath: string;
  /** runsc's state directory; every sandbox of this agent lives under it. */
  stateDir: string;
  platform: 'systrap' | 'ptrace';
  logger: Logger;
}

const CGROUP_ROOT = '/sys/fs/cgroup';
const RUN_TIMEOUT_MS = 30_000;

/**
 * gVisor (`runsc`). Sandboxes run with netstack (`--network=sandbox`) in the slot's netns, and with
 * gVisor's own rootfs overlay off (`--overlay2=none`) so writes land in our overlayfs upper layer, on
 * the sandbox's disk image, where the disk limit applies and the host can measure them.
 */
export class GvisorDriver implements RuntimeDriver {
  readonly name = 'gvisor';

  constructor(private readonly opts: GvisorOptions) {}

  private get globalFlags(): string[] {
    return [
      `--root=${this.opts.stateDir}`,
      `--platform=${this.opts.platform}`,
      '--network=sandbox',
      '--overlay2=none',
    ];
  }

  async create(spec: RuntimeSandboxSpec, signal?: AbortSignal): Promise<{ pid: number }> {
    await mkdir(spec.bundleDir, { recursive: true });
    await mkdir(this.opts.stateDir, { recursive: true });
    await writeFile(path.join(spec.bundleDir, 'config.json'), JSON.stringify(buildOciSpec(spec), null, 1));
    // runsc's `run -detach` hands its stdout/stderr down to the sandbox, which keeps them open for its
    // whole life: give it a log file (where envd's own output also lands) and wait for exit, not EOF.
    const log = await open(spec.logFile, 'a');
    try {
      const args = [...this.globalFlags, 'run', '-bundle', spec.bundleDir, '-detach', spec.id];
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
    const { stdout } = await this.runsc(['state', spec.id]);
    const { pid } = JSON.parse(stdout) as { pid: number };
    return { pid };
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
    const file = path.join(CGROUP_ROOT, 'memory', 'wrenn', id, 'memory.oom_control');
    const oomControl = await readFile(file, 'utf8').catch(() => '');
    return Number(/^oom_kill (\d+)/m.exec(oomControl)?.[1] ?? 0) > 0;
  }

  async destroy(id: string): Promise<void> {
    // `delete --force` kills the sandbox's processes and removes its state and cgroups.
    const { exitCode, stderr } = await this.runsc(['delete', '--force', id], true);
    if (exitCode !== 0 && !/does not exist|not found|cannot load/i.test(stderr)) {
      throw new ExecError([this.opts.runscPath, 'delete', '--force', id], exitCode, stderr);
    }
    await removeCgroups(id);
  }

  async list(): Promise<string[]> {
    const { stdout } = await this.runsc(['list', '--format=json'], true);
    const parsed = JSON.parse(stdout.trim() || 'null') as { id: string }[] | null;
    return (parsed ?? []).map((c) => c.id);
  }

  async removeLeftovers(): Promise<void> {
    const ids = await this.list().catch(() => [] as string[]);
    for (const id of ids) {
      await this.destroy(id).catch((err: unknown) =>
        this.opts.logger.warn({ err, id }, 'could not delete leftover sandbox'),
      );
    }
    // Processes whose state runsc lost (killed mid-create): find them by our --root flag.
    const pids = await runscPidsUsingRoot(this.opts.stateDir);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const id of await listCgroups()) await removeCgroups(id);
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
export async function runscPidsUsingRoot(stateDir: string): Promise<number[]> {
  const flag = `--root=${stateDir}`;
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(flag)) pids.push(Number(entry));
  }
  return pids;
}

async function listCgroups(): Promise<string[]> {
  const ids = new Set<string>();
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    const entries = await readdir(path.join(CGROUP_ROOT, controller, 'wrenn'), { withFileTypes: true }).catch(
      () => [],
    );
    for (const entry of entries) if (entry.isDirectory()) ids.add(entry.name);
  }
  return [...ids];
}

async function removeCgroups(id: string): Promise<void> {
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    await rmdir(path.join(CGROUP_ROOT, controller, 'wrenn', id)).catch(() => undefined);
  }
}
