import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { Code, ConnectError } from '@wrenn/core';
import type { LaunchPlan } from './launch.js';
import type { ProcessIo, ProcessIoEvents } from './process-io.js';

/**
 * After the child exits, how long to keep reading its pipes. A background grandchild (`cmd &`) may
 * hold them open forever; like Go's exec.Cmd.Wait we then stop reading instead of waiting for it.
 */
const drainAfterExitMs = 1_000;

/** Call at the child's exit: stops reading `streams` once they had drainAfterExitMs to drain. */
export function destroyWhenDrained(streams: readonly Readable[], isPaused: () => boolean): () => void {
  let timer: NodeJS.Timeout;
  const check = () => {
    // While paused for a slow reader, the pipes are not stuck, just throttled: keep waiting.
    if (isPaused()) {
      timer = setTimeout(check, drainAfterExitMs);
      return;
    }
    for (const stream of streams) stream.destroy();
  };
  timer = setTimeout(check, drainAfterExitMs);
  return () => clearTimeout(timer);
}

export type PipeSpawner = (
  plan: LaunchPlan,
  opts: { stdin: boolean },
  events: ProcessIoEvents,
) => Promise<ProcessIo>;

export async function spawnPipeProcess(
  plan: LaunchPlan,
  opts: { stdin: boolean },
  events: ProcessIoEvents,
): Promise<ProcessIo> {
  const child = spawn(plan.file, plan.args, {
    cwd: plan.cwd,
    env: plan.env,
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    // Its own session: signals aimed at envd's process group (and a quiesce) never reach it.
    detached: true,
    ...(plan.credentials ? { uid: plan.credentials.uid, gid: plan.credentials.gid } : {}),
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      child.off('spawn', onSpawn);
      reject(new ConnectError(`error starting process: ${err.message}`, Code.InvalidArgument));
    };
    const onSpawn = () => {
      child.off('error', onError);
      resolve();
    };
    child.once('error', onError);
    child.once('spawn', onSpawn);
  });
  const pid = child.pid as number;
  const { stdout, stderr } = child;
  if (!stdout || !stderr) throw new Error('child has no output pipes');

  const flow = { isPaused: false };
  stdout.on('data', (chunk: Buffer) => events.onOutput('stdout', chunk));
  stderr.on('data', (chunk: Buffer) => events.onOutput('stderr', chunk));
  child.stdin?.on('error', () => undefined);
  child.on('error', () => undefined);

  let cancelDrain: (() => void) | undefined;
  child.once('exit', () => {
    cancelDrain = destroyWhenDrained([stdout, stderr], () => flow.isPaused);
  });
  // 'close' comes after the exit and after both pipes closed, so no output follows it.
  child.once('close', (code, signal) => {
    cancelDrain?.();
    events.onExit(code, signal);
  });

  return streamProcessIo(pid, { stdin: child.stdin, stdout, stderr }, flow);
}

/**
 * The ProcessIo of a child whose stdio are Node streams (pipes from spawn, or the fork-server's
 * sockets). `flow.isPaused` is shared with the caller, which also consults it when draining.
 */
export function streamProcessIo(
  pid: number,
  stdio: { stdin: Writable | null | undefined; stdout: Readable; stderr: Readable },
  flow: { isPaused: boolean },
): ProcessIo {
  const { stdin, stdout, stderr } = stdio;
  return {
    pid,
    isPty: false,
    pauseOutput() {
      flow.isPaused = true;
      stdout.pause();
      stderr.pause();
    },
    resumeOutput() {
      flow.isPaused = false;
      stdout.resume();
      stderr.resume();
    },
    write(data) {
      if (!stdin || stdin.writableEnded || stdin.destroyed) {
        return Promise.reject(new ConnectError('stdin not enabled or closed', Code.FailedPrecondition));
      }
      return new Promise<void>((resolve, reject) => {
        stdin.write(data, (err) =>
          err ? reject(new ConnectError(`error writing to stdin: ${err.message}`, Code.Internal)) : resolve(),
        );
      });
    },
    closeStdin() {
      if (!stdin) throw new ConnectError('stdin not enabled', Code.FailedPrecondition);
      stdin.end();
    },
    resize() {
      throw new ConnectError('process has no PTY', Code.FailedPrecondition);
    },
  };
}
