import { Code, ConnectError } from '@wrenn/core';
import type * as NodePtyModule from 'node-pty';
import type { IPty } from 'node-pty';
import type { LaunchPlan } from './launch.js';
import type { ProcessIo, ProcessIoEvents } from './process-io.js';

type NodePty = typeof NodePtyModule;

let nodePty: Promise<NodePty> | undefined;

// node-pty is a native addon: loaded on first use so that envd still serves everything else when the
// addon is missing or cannot load (a PTY start then fails with unavailable).
function loadNodePty(): Promise<NodePty> {
  nodePty ??= import('node-pty').then((m: NodePty & { default?: NodePty }) => m.default ?? m);
  return nodePty;
}

export async function spawnPtyProcess(
  plan: LaunchPlan,
  size: { cols: number; rows: number },
  events: ProcessIoEvents,
): Promise<ProcessIo> {
  let pty: NodePty;
  try {
    pty = await loadNodePty();
  } catch (err) {
    nodePty = undefined;
    throw new ConnectError(`PTY support is not available: ${String(err)}`, Code.Unavailable);
  }

  let term: IPty;
  const creds = plan.credentials;
  // node-pty's child calls setgid/setuid but not setgroups, so it would keep envd's (root's)
  // supplementary groups. Only used when setpriv is missing: fork happens synchronously inside
  // spawn(), so setting our own groups around it gives the child the user's groups, and nothing
  // else runs in between.
  const savedGroups = creds ? process.getgroups?.() : undefined;
  try {
    if (creds) process.setgroups?.(creds.groups);
    term = pty.spawn(plan.file, plan.args, {
      name: plan.env.TERM ?? 'xterm-256color',
      cols: size.cols,
      rows: size.rows,
      cwd: plan.cwd,
      env: plan.env,
      encoding: null,
      ...(creds ? { uid: creds.uid, gid: creds.gid } : {}),
    });
  } catch (err) {
    throw new ConnectError(`error starting process: ${String(err)}`, Code.InvalidArgument);
  } finally {
    if (savedGroups) process.setgroups?.(savedGroups);
  }

  // With `encoding: null` node-pty hands out Buffers although its types say string.
  term.onData((data) => events.onOutput('pty', Buffer.isBuffer(data) ? data : Buffer.from(data)));
  // node-pty reports the exit only after the terminal's output is drained (or 200 ms later).
  term.onExit(({ exitCode, signal }) => events.onExit(signal ? null : exitCode, signal ?? null));

  return {
    pid: term.pid,
    isPty: true,
    pauseOutput: () => term.pause(),
    resumeOutput: () => term.resume(),
    write(data) {
      term.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return Promise.resolve();
    },
    closeStdin() {
      // A terminal has no stdin to close; Ctrl-D is its end-of-file.
      term.write('\x04');
    },
    resize(cols, rows) {
      term.resize(cols, rows);
    },
  };
}
