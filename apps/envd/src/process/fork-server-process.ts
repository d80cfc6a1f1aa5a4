import type { Socket } from 'node:net';
import { destroyWhenDrained, streamProcessIo } from './pipe-process.js';
import type { ProcessIo, ProcessIoEvents } from './process-io.js';

export interface ChildStreams {
  stdin: Socket | undefined;
  stdout: Socket;
  stderr: Socket;
}

/** A waitpid status split the way Node's 'exit' event reports it. */
export function decodeWaitStatus(status: number): { code: number | null; signal: number | null } {
  const termSignal = status & 0x7f;
  return termSignal === 0 ? { code: (status >> 8) & 0xff, signal: null } : { code: null, signal: termSignal };
}

/**
 * A child the fork-server started, whose stdio are unix sockets envd accepted. Same contract as
 * pipe-process.ts: onExit comes once, after the exit and after both output streams closed (or were
 * given up on drainAfterExitMs after the exit).
 */
export function forkServerProcess(
  pid: number,
  streams: ChildStreams,
  events: ProcessIoEvents,
): { io: ProcessIo; exited: (code: number | null, signal: number | null) => void } {
  const { stdin, stdout, stderr } = streams;
  const flow = { isPaused: false };
  let exit: { code: number | null; signal: number | null } | undefined;
  let openOutputs = 2;
  let cancelDrain: (() => void) | undefined;

  const maybeEnd = () => {
    if (!exit || openOutputs > 0) return;
    cancelDrain?.();
    const { code, signal } = exit;
    exit = undefined;
    openOutputs = -1;
    events.onExit(code, signal);
  };
  for (const [kind, socket] of [
    ['stdout', stdout],
    ['stderr', stderr],
  ] as const) {
    socket.on('error', () => undefined);
    // Paused first, or adding the listener would start the flow before the setImmediate below.
    socket.pause();
    socket.on('data', (chunk: Buffer) => events.onOutput(kind, chunk));
    // A stream the child ended with nothing after the header has already closed by now when its
    // request waited for another stream (its 'close' came and went): waiting for it hung the
    // process's end for good. Closed means read to the end — nothing of it is lost.
    if (socket.closed) openOutputs--;
    else
      socket.once('close', () => {
        openOutputs--;
        maybeEnd();
      });
  }
  stdin?.on('error', () => undefined);
  // ProcessIo delivers output only from a later turn, once the caller holds the io.
  setImmediate(() => {
    if (!flow.isPaused) {
      stdout.resume();
      stderr.resume();
    }
    // Whatever the child writes to its fd 0 is dropped; reading is what notices its end.
    stdin?.resume();
  });

  return {
    exited: (code, signal) => {
      exit = { code, signal };
      // Node's ChildProcess does the same: no writes to a stdin nobody can read from any more.
      stdin?.destroy();
      cancelDrain = destroyWhenDrained([stdout, stderr], () => flow.isPaused);
      maybeEnd();
    },
    io: streamProcessIo(pid, { stdin, stdout, stderr }, flow),
  };
}
