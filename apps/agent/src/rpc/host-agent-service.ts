import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { assertExhaustive, Code, ConnectError, invalidArgument, resourceExhausted } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import { runCommand } from '../sandbox/commands.js';
import type { SandboxInfo, SandboxManager, SandboxStatus } from '../sandbox/manager.js';
import {
  validateCommand,
  validateCreate,
  validatePath,
  validateSandboxId,
  validateUser,
} from './validation.js';

// Unary calls carry whole payloads in memory; past these, callers use the streaming variants.
export const MAX_UNARY_OUTPUT_BYTES = 8 * 1024 * 1024;
export const MAX_UNARY_FILE_BYTES = 32 * 1024 * 1024;

export function hostAgentService(
  manager: SandboxManager,
  config: AgentConfig,
): ServiceImpl<typeof hostagent.HostAgentService> {
  return {
    async createSandbox(req, ctx) {
      const params = validateCreate(req, config.limits);
      const info = await manager.create(params, ctx.signal);
      return { sandbox: toProto(info) };
    },

    async destroySandbox(req) {
      await manager.destroy(validateSandboxId(req.sandboxId));
      return {};
    },

    getSandbox(req) {
      return { sandbox: toProto(manager.get(validateSandboxId(req.sandboxId))) };
    },

    listSandboxes() {
      return { sandboxes: manager.list().map(toProto) };
    },

    async exec(req, ctx) {
      const { envd, signal, explain } = open(manager, req.sandboxId, ctx.signal);
      const spec = validateCommand(req.command);
      const out = { stdout: new OutputCollector(), stderr: new OutputCollector() };
      const res = create(hostagent.ExecResponseSchema);
      try {
        for await (const ev of runCommand(envd, spec, signal)) {
          switch (ev.type) {
            case 'started':
              res.pid = ev.pid;
              break;
            case 'stdout':
            case 'stderr':
              out[ev.type].add(ev.data);
              break;
            case 'exited':
              res.exitCode = ev.exitCode;
              res.timedOut = ev.timedOut;
              break;
            default:
              assertExhaustive(ev);
          }
        }
      } catch (err) {
        throw await explain(err);
      }
      res.stdout = out.stdout.bytes();
      res.stderr = out.stderr.bytes();
      res.truncated = out.stdout.truncated || out.stderr.truncated;
      return res;
    },

    async *execStream(req, ctx) {
      const { envd, signal, explain } = open(manager, req.sandboxId, ctx.signal);
      const spec = validateCommand(req.command);
      try {
        for await (const ev of runCommand(envd, spec, signal)) {
          switch (ev.type) {
            case 'started':
              yield { event: { case: 'started', value: { pid: ev.pid } } };
              break;
            case 'stdout':
            case 'stderr':
              yield { event: { case: ev.type, value: ev.data } };
              break;
            case 'exited':
              yield {
                event: {
                  case: 'exited',
                  value: { exitCode: ev.exitCode, timedOut: ev.timedOut, status: ev.status },
                },
              };
              break;
            default:
              assertExhaustive(ev);
          }
        }
      } catch (err) {
        throw await explain(err);
      }
    },

    async readFile(req, ctx) {
      const { envd, signal, explain } = open(manager, req.sandboxId, ctx.signal);
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        const res = await envd.download(path, user, signal);
        for await (const chunk of res) {
          size += (chunk as Buffer).length;
          if (size > MAX_UNARY_FILE_BYTES) {
            res.destroy();
            throw resourceExhausted(
              `path: file is larger than ${MAX_UNARY_FILE_BYTES} bytes; use ReadFileStream`,
            );
          }
          chunks.push(chunk as Buffer);
        }
      } catch (err) {
        throw await explain(err);
      }
      return { content: Buffer.concat(chunks) };
    },

    async *readFileStream(req, ctx) {
      const { envd, signal, explain } = open(manager, req.sandboxId, ctx.signal);
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      try {
        const res = await envd.download(path, user, signal);
        for await (const chunk of res) yield { chunk: chunk as Buffer };
      } catch (err) {
        throw await explain(err);
      }
    },

    async writeFile(req, ctx) {
      const { envd, signal, explain } = open(manager, req.sandboxId, ctx.signal);
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      if (req.content.byteLength > MAX_UNARY_FILE_BYTES) {
        throw invalidArgument('content', `larger than ${MAX_UNARY_FILE_BYTES} bytes; use WriteFileStream`);
      }
      try {
        return { bytesWritten: BigInt(await envd.upload(path, user, [req.content], signal)) };
      } catch (err) {
        throw await explain(err);
      }
    },

    async writeFileStream(requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      const header = first.done ? undefined : first.value.part;
      if (header?.case !== 'header')
        throw invalidArgument('header', 'the first message must carry the header');
      const { envd, signal, explain } = open(
        manager,
        validateSandboxId(header.value.sandboxId, 'header.sandbox_id'),
        ctx.signal,
      );
      const path = validatePath(header.value.path, 'header.path');
      const user = validateUser(header.value.user, 'header.user');
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
          const part = next.value.part;
          if (part.case !== 'chunk')
            throw invalidArgument('chunk', 'only the first message may carry a header');
          yield part.value;
        }
      }
      try {
        return { bytesWritten: BigInt(await envd.upload(path, user, chunks(), signal)) };
      } catch (err) {
        throw await explain(err);
      }
    },
  };
}

/**
 * A call's view of a running sandbox: its envd, a signal that fires when either the caller goes away
 * or the sandbox stops, and `explain`, which turns the resulting failure into the sandbox's reason.
 */
function open(manager: SandboxManager, sandboxId: string, callSignal: AbortSignal) {
  const { envd, stopped } = manager.connection(validateSandboxId(sandboxId));
  return {
    envd,
    signal: AbortSignal.any([callSignal, stopped]),
    explain: async (err: unknown): Promise<unknown> => {
      if (stopped.aborted) return stopped.reason;
      // A connection that broke may mean the sandbox died; its reason beats "connection reset".
      const code = ConnectError.from(err).code;
      if (
        code === Code.Aborted ||
        code === Code.Unavailable ||
        code === Code.Internal ||
        code === Code.Unknown
      ) {
        return (await manager.deathOf(sandboxId)) ?? err;
      }
      return err;
    },
  };
}

class OutputCollector {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  truncated = false;

  add(data: Uint8Array): void {
    const room = MAX_UNARY_OUTPUT_BYTES - this.size;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const kept = data.byteLength > room ? data.subarray(0, room) : data;
    this.truncated ||= kept !== data;
    this.chunks.push(kept);
    this.size += kept.byteLength;
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

const STATUS: Record<SandboxStatus, hostagent.SandboxStatus> = {
  pending: hostagent.SandboxStatus.PENDING,
  running: hostagent.SandboxStatus.RUNNING,
  stopped: hostagent.SandboxStatus.STOPPED,
  error: hostagent.SandboxStatus.ERROR,
};

function toProto(info: SandboxInfo): hostagent.Sandbox {
  return create(hostagent.SandboxSchema, {
    id: info.id,
    template: info.template,
    status: STATUS[info.status],
    vcpus: info.vcpus,
    memoryMb: info.memoryMb,
    diskMb: info.diskMb,
    metadata: info.metadata,
    createdAt: timestampFromDate(info.createdAt),
    envdAddress: info.envdAddress,
    statusReason: info.statusReason,
  });
}
