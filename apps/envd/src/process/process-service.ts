import { create } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { process as processpb } from '@wrenn/contracts';
import { Code, ConnectError, type Logger } from '@wrenn/core';
import type { SandboxDefaults } from '../init/sandbox-defaults.js';
import { keepaliveIntervalMs, withKeepalive } from '../stream/keepalive.js';
import type { RequestUsers } from '../users/request-user.js';
import type { ForkServer } from './fork-server.js';
import { planLaunch } from './launch.js';
import { ManagedProcess } from './managed-process.js';
import type { ProcessTable } from './process-table.js';

export interface ProcessServiceDeps {
  table: ProcessTable;
  users: RequestUsers;
  defaults: SandboxDefaults;
  setprivPath: string | undefined;
  /** Forks pipe processes while it runs (once started); PTYs always come from node-pty. */
  forkServer: Promise<ForkServer | undefined>;
  bufferBytes: number;
  logger: Logger;
}

const defaultPtySize = { cols: 80, rows: 24 };

/** E2B's `process.Process` service. */
export function createProcessService(deps: ProcessServiceDeps): ServiceImpl<typeof processpb.Process> {
  const { table, users, defaults, logger } = deps;

  function eventStream(proc: ManagedProcess, ctx: HandlerContext) {
    const keepalive = () => create(processpb.ProcessEventSchema, { event: { case: 'keepalive', value: {} } });
    return withKeepalive(
      proc.events(ctx.signal),
      keepalive,
      keepaliveIntervalMs(ctx.requestHeader),
      ctx.signal,
    );
  }

  return {
    list() {
      return {
        processes: table.running().map((p) => ({ config: p.config, pid: p.pid, tag: p.tag })),
      };
    },

    async *start(req, ctx) {
      const user = await users.fromHeaders(ctx.requestHeader);
      const config = req.process;
      if (!config) throw new ConnectError('process config is missing', Code.InvalidArgument);
      const started = req.pty ? undefined : await deps.forkServer;
      const forkServer = started?.isRunning ? started : undefined;
      const plan = await planLaunch(
        { cmd: config.cmd, args: config.args, envs: config.envs, cwd: config.cwd },
        {
          user,
          sandboxEnv: defaults.envVars,
          defaultWorkdir: defaults.defaultWorkdir,
          // The fork-server sets uid, gid and groups itself; no setpriv exec in between.
          setprivPath: forkServer ? undefined : deps.setprivPath,
          ownUid: process.getuid?.() ?? 0,
        },
      );
      const size = req.pty?.size;
      const proc = await ManagedProcess.start(plan, {
        config,
        tag: req.tag,
        pty: req.pty
          ? { cols: size?.cols || defaultPtySize.cols, rows: size?.rows || defaultPtySize.rows }
          : undefined,
        // Unset means an old client that expects a stdin pipe (E2B keeps it open for them).
        stdin: req.stdin ?? true,
        ...(forkServer ? { spawnPipe: forkServer.spawn.bind(forkServer) } : {}),
        // E2B semantics: Connect-Timeout-Ms of Start is the process's lifetime, not just the stream's.
        lifetimeMs: ctx.timeoutMs(),
        bufferBytes: deps.bufferBytes,
        logger: logger.child({ user: user.name }),
      });
      table.add(proc);
      for await (const event of eventStream(proc, ctx)) yield { event };
    },

    async *connect(req, ctx) {
      await users.fromHeaders(ctx.requestHeader);
      const proc = table.find(req.process);
      for await (const event of eventStream(proc, ctx)) yield { event };
    },

    update(req) {
      const proc = table.findRunning(req.process);
      const size = req.pty?.size;
      if (size) proc.resize(size.cols || defaultPtySize.cols, size.rows || defaultPtySize.rows);
      return {};
    },

    async streamInput(reqs) {
      let proc: ManagedProcess | undefined;
      for await (const msg of reqs) {
        switch (msg.event.case) {
          case 'start':
            proc = table.findRunning(msg.event.value.process);
            break;
          case 'data':
            if (!proc)
              throw new ConnectError('first message must select the process', Code.FailedPrecondition);
            await writeInput(proc, msg.event.value.input);
            break;
          case 'keepalive':
          case undefined:
            break;
        }
      }
      return {};
    },

    async sendInput(req) {
      await writeInput(table.findRunning(req.process), req.input);
      return {};
    },

    sendSignal(req) {
      const proc = table.findRunning(req.process);
      switch (req.signal) {
        case processpb.Signal.SIGKILL:
          proc.signal('SIGKILL');
          break;
        case processpb.Signal.SIGTERM:
          proc.signal('SIGTERM');
          break;
        case processpb.Signal.UNSPECIFIED:
        default:
          throw new ConnectError(`invalid signal: ${req.signal}`, Code.Unimplemented);
      }
      return {};
    },

    closeStdin(req) {
      table.findRunning(req.process).closeStdin();
      return {};
    },
  };
}

async function writeInput(proc: ManagedProcess, input: processpb.ProcessInput | undefined): Promise<void> {
  switch (input?.input.case) {
    case 'stdin':
      return proc.write(input.input.value);
    case 'pty':
      if (!proc.isPty) throw new ConnectError('process has no PTY', Code.FailedPrecondition);
      return proc.write(input.input.value);
    case undefined:
      throw new ConnectError('input is empty', Code.InvalidArgument);
  }
}
