import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { rmSync } from 'node:fs';
import { access, mkdtemp } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Code, ConnectError, type Logger } from '@wrenn/core';
import { forkServerProcess, decodeWaitStatus, type ChildStreams } from './fork-server-process.js';
import { withSetpriv, type LaunchPlan } from './launch.js';
import { spawnPipeProcess } from './pipe-process.js';
import type { ProcessIo, ProcessIoEvents } from './process-io.js';

// The protocol is documented at the top of native/forkserver.c.
const headerBytes = 24;
const flagStdin = 1;
const flagSwitchIdentity = 2;
// A connection that has not named its request by then is not one of the fork-server's.
const headerTimeoutMs = 5_000;
const readyTimeoutMs = 5_000;
// After the fork-server died its children are nobody's: this is how often we look for their end.
const orphanPollMs = 500;

/**
 * Where the fork-server binary is: next to the bundle (dist/envd.cjs → dist/bin/), or, running
 * from source, in the built dist/.
 */
export function defaultForkServerPaths(): string[] {
  return [
    fileURLToPath(new URL('./bin/wrenn-forkserver', import.meta.url)),
    fileURLToPath(new URL('../../dist/bin/wrenn-forkserver', import.meta.url)),
  ];
}

interface PendingSpawn {
  plan: LaunchPlan;
  opts: { stdin: boolean };
  events: ProcessIoEvents;
  streams: (Socket | undefined)[];
  pid: number | undefined;
  resolve(io: ProcessIo): void;
  reject(err: unknown): void;
}

interface ChildRecord {
  /** The exit reported before the process's streams were all accepted. */
  early?: { code: number | null; signal: number | null };
  exited?(code: number | null, signal: number | null): void;
}

/** Not the request's fault: the fork-server could not take it, so Node spawns it instead. */
class FallbackNeeded extends Error {}

/**
 * envd's client of native/forkserver.c, a small static program that does the fork/exec of every
 * pipe process (forking Node itself costs ~100 ms under gVisor). When it is missing or dies,
 * spawn() quietly uses spawnPipeProcess.
 */
export class ForkServer {
  private nextId = 1;
  private readonly pending = new Map<number, PendingSpawn>();
  private readonly children = new Map<number, ChildRecord>();
  private alive = true;
  private closing = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly server: Server,
    private readonly socketDir: string,
    private readonly token: Buffer,
    private readonly setprivPath: string | undefined,
    private readonly logger: Logger,
  ) {}

  /** Starts the binary at the first of `paths` that exists; undefined when none can run. */
  static async start(opts: {
    paths: readonly string[];
    setprivPath: string | undefined;
    logger: Logger;
  }): Promise<ForkServer | undefined> {
    const { logger } = opts;
    let path: string | undefined;
    for (const candidate of opts.paths) {
      try {
        await access(candidate, fsConstants.X_OK);
        path = candidate;
        break;
      } catch {
        // try the next one
      }
    }
    if (!path) {
      logger.warn({ paths: opts.paths }, 'fork-server binary not found: Node spawns pipe processes');
      return undefined;
    }

    // Not abstract: Node 20 pads abstract names to the whole sun_path, other versions do not. The
    // directory is 0700, and the token proves a stream came from the fork-server all the same.
    // Should the socket vanish (someone cleans /tmp), each start falls back to Node's spawn.
    let socketDir = '';
    const server = createServer();
    const token = randomBytes(16);
    try {
      socketDir = await mkdtemp(join(tmpdir(), 'wrenn-envd-'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(join(socketDir, 'fork.sock'), () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      if (socketDir) rmSync(socketDir, { recursive: true, force: true });
      logger.warn({ err }, 'fork-server socket failed: Node spawns pipe processes');
      return undefined;
    }
    const child = spawn(path, [join(socketDir, 'fork.sock')], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { WRENN_FORKSERVER_TOKEN: token.toString('hex') },
      // Out of envd's process group: a Ctrl-C meant for envd leaves it to see its stdin close.
      detached: true,
    });
    const forkServer = new ForkServer(child, server, socketDir, token, opts.setprivPath, logger);
    const ready = await forkServer.waitReady();
    if (!ready) {
      logger.warn({ path }, 'fork-server did not start: Node spawns pipe processes');
      forkServer.close();
      return undefined;
    }
    logger.info({ path, pid: child.pid }, 'fork-server started');
    return forkServer;
  }

  /** While true, pipe processes are forked by the fork-server, which sets their identity itself. */
  get isRunning(): boolean {
    return this.alive;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Same contract as spawnPipeProcess; `plan` may carry credentials (no setpriv wrapper). */
  async spawn(plan: LaunchPlan, opts: { stdin: boolean }, events: ProcessIoEvents): Promise<ProcessIo> {
    if (this.alive) {
      try {
        return await this.request(plan, opts, events);
      } catch (err) {
        if (!(err instanceof FallbackNeeded)) throw err;
        this.logger.warn({ err: err.message }, 'fork-server could not start a process: Node spawns it');
      }
    }
    return spawnPipeProcess(this.setprivPath ? withSetpriv(plan, this.setprivPath) : plan, opts, events);
  }

  /** Ends the fork-server (it exits when its stdin closes); running children are left alone. */
  close(): void {
    this.closing = true;
    this.child.stdin?.end();
    this.server.close();
    rmSync(this.socketDir, { recursive: true, force: true });
  }

  private request(plan: LaunchPlan, opts: { stdin: boolean }, events: ProcessIoEvents): Promise<ProcessIo> {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    const frame = encodeRequest(id, plan, opts.stdin);
    return new Promise<ProcessIo>((resolve, reject) => {
      this.pending.set(id, { plan, opts, events, streams: [], pid: undefined, resolve, reject });
      this.child.stdin?.write(frame);
    });
  }

  private waitReady(): Promise<boolean> {
    const { child } = this;
    child.stdin?.on('error', () => undefined);
    this.server.on('connection', (socket) => this.accept(socket));
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), readyTimeoutMs);
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.on('line', (line) => {
        if (line === 'R') {
          clearTimeout(timer);
          resolve(true);
        } else this.onEvent(line);
      });
      child.once('error', (err) => {
        this.logger.warn({ err }, 'fork-server failed');
        clearTimeout(timer);
        resolve(false);
        this.onDeath(null, null);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve(false);
        this.onDeath(code, signal);
      });
      // envd's lifetime is its server's business, not the fork-server's.
      child.unref();
      (child.stdin as unknown as Socket | null)?.unref?.();
      (child.stdout as unknown as Socket | null)?.unref?.();
      this.server.unref();
    });
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    socket.setTimeout(headerTimeoutMs, () => socket.destroy());
    const onReadable = () => {
      const header = socket.read(headerBytes) as Buffer | null;
      if (header === null) return;
      socket.off('readable', onReadable);
      socket.setTimeout(0);
      if (header.length !== headerBytes || !timingSafeEqual(header.subarray(0, 16), this.token)) {
        socket.destroy();
        return;
      }
      const id = header.readUInt32LE(16);
      const stream = header.readUInt32LE(20);
      const pending = this.pending.get(id);
      if (!pending || stream > 2 || pending.streams[stream]) {
        socket.destroy();
        return;
      }
      pending.streams[stream] = socket;
      this.complete(id, pending);
    };
    socket.on('readable', onReadable);
  }

  private onEvent(line: string): void {
    const [kind, a = '', b = ''] = line.split(' ');
    const first = Number(a);
    const second = Number(b);
    switch (kind ?? '') {
      case 'S': {
        const pending = this.pending.get(first);
        if (!pending) return;
        pending.pid = second;
        this.children.set(second, {});
        this.complete(first, pending);
        return;
      }
      case 'F':
      case 'E': {
        const pending = this.pending.get(first);
        if (!pending) return;
        this.pending.delete(first);
        for (const socket of pending.streams) socket?.destroy();
        const code = errnoName(second);
        pending.reject(
          kind === 'F'
            ? new ConnectError(
                `error starting process: fork/exec ${pending.plan.file}: ${code}`,
                Code.InvalidArgument,
              )
            : new FallbackNeeded(`fork-server setup failed: ${code}`),
        );
        return;
      }
      case 'X': {
        const record = this.children.get(first);
        if (!record) return;
        const { code, signal } = decodeWaitStatus(second);
        if (record.exited) {
          this.children.delete(first);
          record.exited(code, signal);
        } else {
          // Its streams are not all accepted yet: complete() delivers this.
          record.early = { code, signal };
        }
        return;
      }
      default:
        this.logger.warn({ line }, 'fork-server sent an unknown event');
    }
  }

  /** Resolves a request once its pid and every stream it asked for are in. */
  private complete(id: number, pending: PendingSpawn): void {
    const { streams, pid } = pending;
    const [stdin, stdout, stderr] = streams;
    if (pid === undefined || !stdout || !stderr || (pending.opts.stdin && !stdin)) return;
    this.pending.delete(id);
    const childStreams: ChildStreams = { stdin, stdout, stderr };
    const { io, exited } = forkServerProcess(pid, childStreams, pending.events);
    const record = this.children.get(pid);
    if (record?.early) {
      const { code, signal } = record.early;
      this.children.delete(pid);
      setImmediate(() => exited(code, signal));
    } else if (record) {
      record.exited = exited;
    }
    pending.resolve(io);
  }

  private onDeath(code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.alive) return;
    this.alive = false;
    this.server.close();
    rmSync(this.socketDir, { recursive: true, force: true });
    if (!this.closing) {
      this.logger.error({ code, signal }, 'fork-server exited: Node spawns pipe processes from now on');
    }
    for (const pending of this.pending.values()) {
      for (const socket of pending.streams) socket?.destroy();
      pending.reject(new FallbackNeeded('fork-server exited'));
    }
    this.pending.clear();
    // Its children were reparented to init, which reaps them: their exit status is lost, but the
    // stream must still end.
    if (this.closing || this.children.size === 0) return;
    const timer = setInterval(() => {
      for (const [pid, record] of this.children) {
        if (isRunning(pid)) continue;
        this.children.delete(pid);
        if (record.exited) record.exited(null, null);
      }
      if (this.children.size === 0) clearInterval(timer);
    }, orphanPollMs);
    timer.unref();
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function errnoName(errno: number): string {
  const entry = Object.entries(osConstants.errno).find(([, n]) => n === errno);
  return entry ? entry[0] : `errno ${errno}`;
}

function encodeRequest(id: number, plan: LaunchPlan, stdin: boolean): Buffer {
  const argv = [plan.file, ...plan.args];
  const env = Object.entries(plan.env).map(([k, v]) => `${k}=${v}`);
  const strings = [plan.file, plan.cwd, ...argv, ...env];
  if (strings.some((s) => s.includes('\0'))) {
    throw new ConnectError('cmd, args, cwd and envs must not contain NUL bytes', Code.InvalidArgument);
  }
  const creds = plan.credentials;
  const groups = creds?.groups ?? [];
  const head = Buffer.alloc(4 + 28 + groups.length * 4);
  let flags = stdin ? flagStdin : 0;
  if (creds) flags |= flagSwitchIdentity;
  const fields = [
    id,
    flags,
    creds?.uid ?? 0,
    creds?.gid ?? 0,
    groups.length,
    argv.length,
    env.length,
    ...groups,
  ];
  fields.forEach((value, i) => head.writeUInt32LE(value, 4 + i * 4));
  const body = Buffer.from(strings.map((s) => `${s}\0`).join(''), 'utf8');
  head.writeUInt32LE(head.length - 4 + body.length, 0);
  return Buffer.concat([head, body]);
}
