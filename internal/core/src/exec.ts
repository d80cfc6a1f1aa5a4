import { spawn } from 'node:child_process';
import type { Logger } from 'pino';

export interface ExecOptions {
  /** Kills the child after this long and throws an ExecError with isTimeout set. */
  timeoutMs?: number;
  signal?: AbortSignal;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolve instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  logger?: Logger;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class ExecError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly isTimeout = false,
  ) {
    const why = isTimeout ? 'timed out' : `exited with ${exitCode ?? 'a signal'}`;
    super(`${argv.join(' ')} ${why}${stderr ? `: ${stderr.trim().slice(0, 2000)}` : ''}`);
    this.name = 'ExecError';
  }
}

const defaultTimeoutMs = 60_000;

/**
 * The one way Wrenn runs a host command (ip, iptables, mount, runsc…): an argv array, never a shell
 * string; bounded in time; a typed error carrying exit code and stderr.
 */
export function exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('exec: empty argv');
  opts.logger?.debug({ argv }, 'exec');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? defaultTimeoutMs);
    const onAbort = () => child.kill('SIGKILL');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      reject(new ExecError(argv, null, e.message));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const result = {
        exitCode: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (timedOut) return reject(new ExecError(argv, code, result.stderr, true));
      if (code !== 0 && !opts.allowFailure) return reject(new ExecError(argv, code, result.stderr));
      resolve(result);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
