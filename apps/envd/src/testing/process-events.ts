import { ConnectError, type Code } from '@wrenn/core';
import type { process as processpb } from '@wrenn/contracts';

/** What a Start/Connect stream delivered, decoded for assertions. */
export interface CollectedRun {
  events: processpb.ProcessEvent[];
  pid: number | undefined;
  stdout: string;
  stderr: string;
  pty: string;
  end: processpb.ProcessEvent_EndEvent | undefined;
  keepalives: number;
}

export function emptyRun(): CollectedRun {
  return { events: [], pid: undefined, stdout: '', stderr: '', pty: '', end: undefined, keepalives: 0 };
}

/** Folds one event into `run`. */
export function addEvent(run: CollectedRun, event: processpb.ProcessEvent | undefined): void {
  if (!event) return;
  run.events.push(event);
  const e = event.event;
  switch (e.case) {
    case 'start':
      run.pid = e.value.pid;
      break;
    case 'data': {
      const out = e.value.output;
      if (out.case) run[out.case] += Buffer.from(out.value).toString('utf8');
      break;
    }
    case 'end':
      run.end = e.value;
      break;
    case 'keepalive':
      run.keepalives++;
      break;
    case undefined:
      break;
  }
}

/** Reads a whole Start/Connect stream. */
export async function collect(
  stream: AsyncIterable<{ event?: processpb.ProcessEvent }>,
  run: CollectedRun = emptyRun(),
): Promise<CollectedRun> {
  for await (const res of stream) addEvent(run, res.event);
  return run;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The Connect code a call failed with, or undefined when it succeeded. */
export async function codeOf(promise: Promise<unknown>): Promise<Code | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}
