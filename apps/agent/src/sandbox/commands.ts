import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@wrenn/core';
import { process as processpb } from '@wrenn/contracts';
import type { EnvdClient } from './envd-client.js';

export interface CommandSpec {
  cmd: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  user: string;
  timeoutMs: number;
  stdin: Uint8Array;
}

export type CommandEvent =
  | { type: 'started'; pid: number }
  | { type: 'stdout'; data: Uint8Array }
  | { type: 'stderr'; data: Uint8Array }
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
  const wantsStdin = spec.stdin.byteLength > 0;
  const headers = new Headers();
  if (spec.user) headers.set('Authorization', `Basic ${Buffer.from(`${spec.user}:`).toString('base64')}`);
  const request = create(processpb.StartRequestSchema, {
    process: { cmd, args, envs: spec.env, cwd: spec.cwd || undefined },
    stdin: wantsStdin,
  });
  let pid = 0;
  try {
    for await (const res of envd.process.start(request, { signal, timeoutMs: spec.timeoutMs, headers })) {
      const event = res.event?.event;
      switch (event?.case) {
        case 'start':
          pid = event.value.pid;
          yield { type: 'started', pid };
          if (wantsStdin) await feedStdin(envd, pid, spec.stdin, headers);
          break;
        case 'data': {
          const out = event.value.output;
          if (out.case === 'stdout' || out.case === 'stderr') yield { type: out.case, data: out.value };
          break;
        }
        case 'end':
          yield {
            type: 'exited',
            exitCode: event.value.exitCode,
            timedOut: false,
            status: event.value.status,
          };
          return;
        case 'keepalive':
        case undefined:
          break;
        default:
          break;
      }
    }
    throw new ConnectError('envd ended the process stream without an exit event', Code.Unavailable);
  } catch (err) {
    if (ConnectError.from(err).code !== Code.DeadlineExceeded) throw err;
    if (pid) await killQuietly(envd, pid, headers);
    yield { type: 'exited', exitCode: -1, timedOut: true, status: `timed out after ${spec.timeoutMs} ms` };
  }
}

async function feedStdin(envd: EnvdClient, pid: number, data: Uint8Array, headers: Headers): Promise<void> {
  const selector = { selector: { case: 'pid' as const, value: pid } };
  await envd.process.sendInput(
    { process: selector, input: { input: { case: 'stdin', value: data } } },
    { headers },
  );
  await envd.process.closeStdin({ process: selector }, { headers });
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
