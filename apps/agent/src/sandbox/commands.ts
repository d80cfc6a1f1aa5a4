import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@wrenn/core';
import { process as processpb } from '@wrenn/contracts';
import { userHeaders, type EnvdClient } from './envd-client.js';

export interface CommandSpec {
  cmd: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  user: string;
  timeoutMs: number;
  stdin: Uint8Array;
  /** Keep stdin open after `stdin` for input sent later (SendExecInput). */
  interactive: boolean;
  /** Run on a pseudo-terminal of this size. */
  pty?: { cols: number; rows: number };
}

export type CommandEvent =
  | { type: 'started'; pid: number }
  | { type: 'stdout'; data: Uint8Array }
  | { type: 'stderr'; data: Uint8Array }
  | { type: 'pty'; data: Uint8Array }
  | { type: 'exited'; exitCode: number; timedOut: boolean; status: string };

/**
 * Runs a command through envd and yields its events in order. A command without args is a shell
 * command line (`/bin/sh -c`). The timeout travels to envd as Connect-Timeout-Ms, which envd treats
 * as the process's lifetime; the agent also kills by pid when the deadline passes, in case envd did not.
 */
export async function* runCommand(
  envd: EnvdClient,
  spec: CommandSpec,
  signal?: AbortSignal,
): AsyncGenerator<CommandEvent> {
  const [cmd, args] = spec.args.length === 0 ? ['/bin/sh', ['-c', spec.cmd]] : [spec.cmd, spec.args];
  const wantsStdin = spec.stdin.byteLength > 0 || spec.interactive;
  const headers = userHeaders(spec.user);
  const request = create(processpb.StartRequestSchema, {
    process: { cmd, args, envs: spec.env, cwd: spec.cwd || undefined },
    stdin: wantsStdin,
    pty: spec.pty ? { size: spec.pty } : undefined,
  });
  let pid = 0;
  let exited = false;
  try {
    for await (const res of envd.process.start(request, { signal, timeoutMs: spec.timeoutMs, headers })) {
      const event = res.event?.event;
      switch (event?.case) {
        case 'start':
          pid = event.value.pid;
          yield { type: 'started', pid };
          if (spec.stdin.byteLength > 0)
            await sendInput(
              envd,
              pid,
              { data: spec.stdin, close: !spec.interactive, pty: !!spec.pty },
              spec.user,
            );
          else if (!spec.interactive && wantsStdin) await sendInput(envd, pid, { close: true }, spec.user);
          break;
        case 'data': {
          const out = event.value.output;
          if (out.case === 'stdout' || out.case === 'stderr' || out.case === 'pty')
            yield { type: out.case, data: out.value };
          break;
        }
        case 'end':
          yield {
            type: 'exited',
            exitCode: event.value.exitCode,
            timedOut: false,
            status: event.value.status,
          };
          // The stream ends right after; reading it to the end (not cancelling it) returns the
          // connection to the pool, and a new connection into gVisor costs up to ~200 ms.
          exited = true;
          break;
        case 'keepalive':
        case undefined:
          break;
        default:
          break;
      }
    }
    if (exited) return;
    throw new ConnectError('envd ended the process stream without an exit event', Code.Unavailable);
  } catch (err) {
    // The caller went away (a closed WebSocket, a cancelled call): its command goes with it.
    if (signal?.aborted && pid) await killQuietly(envd, pid, headers);
    if (ConnectError.from(err).code !== Code.DeadlineExceeded) throw err;
    if (pid) await killQuietly(envd, pid, headers);
    yield { type: 'exited', exitCode: -1, timedOut: true, status: `timed out after ${spec.timeoutMs} ms` };
  }
}

/** Writes to a running command's stdin (or terminal), then optionally closes stdin. */
export async function sendInput(
  envd: EnvdClient,
  pid: number,
  input: { data?: Uint8Array; close?: boolean; pty?: boolean },
  user = '',
): Promise<void> {
  const selector = { selector: { case: 'pid' as const, value: pid } };
  const headers = userHeaders(user);
  if (input.data?.byteLength) {
    const value = input.data;
    await envd.process.sendInput(
      { process: selector, input: { input: input.pty ? { case: 'pty', value } : { case: 'stdin', value } } },
      { headers },
    );
  }
  // A terminal has no separate end of input; the program reads ^D from it.
  if (input.close && !input.pty) await envd.process.closeStdin({ process: selector }, { headers });
}

export async function resizePty(
  envd: EnvdClient,
  pid: number,
  size: { cols: number; rows: number },
): Promise<void> {
  await envd.process.update({ process: { selector: { case: 'pid', value: pid } }, pty: { size } });
}

async function killQuietly(envd: EnvdClient, pid: number, headers: Headers): Promise<void> {
  try {
    await envd.process.sendSignal(
      { process: { selector: { case: 'pid', value: pid } }, signal: processpb.Signal.SIGKILL },
      { headers, timeoutMs: 5000 },
    );
  } catch {
    // already gone, which is what we wanted
  }
}
