import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { assertExhaustive, Code, ConnectError, invalidArgument, resourceExhausted } from '@wrenn/core';
import { filesystem, hostagent } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import { resizePty, runCommand, sendInput } from '../sandbox/commands.js';
import { userHeaders, type EnvdClient } from '../sandbox/envd-client.js';
import type { SandboxInfo, SandboxManager, SandboxStatus } from '../sandbox/manager.js';
import type { ImageImporter } from '../storage/image-importer.js';
import type { Template, TemplateStore, TemplateSummary } from '../storage/templates.js';
import type { MetricSample } from '../metrics/tiers.js';
import { exportParts, importParts, validateArtifactRef } from './artifact-parts.js';
import {
  validateCommand,
  validateCreate,
  validateDirDepth,
  validateExecInput,
  validateImportImage,
  validatePtySize,
  validateMetricsRange,
  validatePath,
  validateSandboxId,
  validateTemplateNameField,
  validateTimeoutSec,
  validateEgress,
  validateUser,
  validateWarmPool,
} from './validation.js';
import type { WarmPoolInfo } from '../sandbox/warm-pool.js';

// Unary calls carry whole payloads in memory; past these, callers use the streaming variants.
export const MAX_UNARY_OUTPUT_BYTES = 8 * 1024 * 1024;
export const MAX_UNARY_FILE_BYTES = 32 * 1024 * 1024;
// A listing is one message: a directory of a million files answers its first 10,000.
export const MAX_DIR_ENTRIES = 10_000;
const LIST_DIR_TIMEOUT_MS = 30_000;

// Long only because it lists every handler; each one is a few lines over a helper below.
export function hostAgentService(
  manager: SandboxManager,
  templates: TemplateStore,
  config: AgentConfig,
  images: ImageImporter,
): ServiceImpl<typeof hostagent.HostAgentService> {
  const proto = (info: SandboxInfo) => toProto(info, manager.envdAccessToken(info.id));
  const { interactive } = manager;

  return {
    async createSandbox(req, ctx) {
      const params = validateCreate(req, config.limits);
      const info = await manager.create(params, ctx.signal);
      return { sandbox: proto(info) };
    },

    async destroySandbox(req, ctx) {
      await manager.destroy(validateSandboxId(req.sandboxId), ctx.signal);
      return {};
    },

    getSandbox(req) {
      return { sandbox: proto(manager.get(validateSandboxId(req.sandboxId))) };
    },

    listSandboxes() {
      return { sandboxes: manager.list().map(proto) };
    },

    async exec(req, ctx) {
      const spec = validateCommand(req.command);
      return withSandbox(manager, req.sandboxId, ctx.signal, async ({ envd, signal }) => {
        const out = { stdout: new OutputCollector(), stderr: new OutputCollector() };
        const res = create(hostagent.ExecResponseSchema);
        for await (const ev of runCommand(envd, spec, signal)) {
          switch (ev.type) {
            case 'started':
              res.pid = ev.pid;
              break;
            case 'stdout':
            case 'stderr':
              out[ev.type].add(ev.data);
              break;
            case 'pty': // unary exec never has a terminal
              out.stdout.add(ev.data);
              break;
            case 'exited':
              res.exitCode = ev.exitCode;
              res.timedOut = ev.timedOut;
              break;
            default:
              assertExhaustive(ev);
          }
        }
        res.stdout = out.stdout.bytes();
        res.stderr = out.stderr.bytes();
        res.truncated = out.stdout.truncated || out.stderr.truncated;
        return res;
      });
    },

    async *execStream(req, ctx) {
      const spec = validateCommand(req.command, 'stream');
      yield* streamFromSandbox(manager, req.sandboxId, ctx.signal, async function* ({ envd, signal }) {
        let forget: (() => void) | undefined;
        try {
          for await (const ev of runCommand(envd, spec, signal)) {
            switch (ev.type) {
              case 'started':
                if (spec.interactive || spec.pty) {
                  forget = interactive.register(req.sandboxId, ev.pid, { pty: !!spec.pty, user: spec.user });
                }
                yield { event: { case: 'started', value: { pid: ev.pid } } };
                break;
              case 'stdout':
              case 'stderr':
              case 'pty':
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
        } finally {
          forget?.();
        }
      });
    },

    async sendExecInput(req, ctx) {
      const sandboxId = validateSandboxId(req.sandboxId);
      const data = validateExecInput(req.data);
      const command = interactive.get(sandboxId, req.pid);
      return withSandbox(manager, sandboxId, ctx.signal, async ({ envd }) => {
        await sendInput(envd, req.pid, { data, close: req.close, pty: command.pty }, command.user);
        return {};
      });
    },

    async resizeExecPty(req, ctx) {
      const sandboxId = validateSandboxId(req.sandboxId);
      const size = validatePtySize(req.size, 'size');
      if (!interactive.get(sandboxId, req.pid).pty)
        throw new ConnectError(`the command with pid ${req.pid} has no terminal`, Code.FailedPrecondition);
      return withSandbox(manager, sandboxId, ctx.signal, async ({ envd }) => {
        await resizePty(envd, req.pid, size);
        return {};
      });
    },

    async readFile(req, ctx) {
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      return withSandbox(manager, req.sandboxId, ctx.signal, async ({ envd, signal }) => {
        const chunks: Buffer[] = [];
        let size = 0;
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
        return { content: Buffer.concat(chunks) };
      });
    },

    async *readFileStream(req, ctx) {
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      yield* streamFromSandbox(manager, req.sandboxId, ctx.signal, async function* ({ envd, signal }) {
        const res = await envd.download(path, user, signal);
        for await (const chunk of res) yield { chunk: chunk as Buffer };
      });
    },

    async writeFile(req, ctx) {
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      if (req.content.byteLength > MAX_UNARY_FILE_BYTES) {
        throw invalidArgument('content', `larger than ${MAX_UNARY_FILE_BYTES} bytes; use WriteFileStream`);
      }
      return withSandbox(manager, req.sandboxId, ctx.signal, async ({ envd, signal }) => ({
        bytesWritten: BigInt(await envd.replaceFile(path, user, [req.content], signal)),
      }));
    },

    async writeFileStream(requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      const header = first.done ? undefined : first.value.part;
      if (header?.case !== 'header')
        throw invalidArgument('header', 'the first message must carry the header');
      const sandboxId = validateSandboxId(header.value.sandboxId, 'header.sandbox_id');
      const path = validatePath(header.value.path, 'header.path');
      const user = validateUser(header.value.user, 'header.user');
      // Only a stream that ends with `end` is a whole file: a cancelled stream can look like one
      // that ended, and must not replace the target.
      async function* chunks(): AsyncGenerator<Uint8Array> {
        let received = 0n;
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
          const part = next.value.part;
          if (part.case === 'end') {
            if (part.value.size !== received)
              throw invalidArgument('end.size', `is ${part.value.size}, but ${received} bytes arrived`);
            if (!(await iterator.next()).done) throw invalidArgument('end', 'must be the last message');
            return;
          }
          if (part.case !== 'chunk')
            throw invalidArgument('chunk', 'only the first message may carry a header');
          received += BigInt(part.value.byteLength);
          yield part.value;
        }
        throw new ConnectError(
          'the upload stopped before its end message; nothing was written',
          Code.Aborted,
        );
      }
      return withSandbox(manager, sandboxId, ctx.signal, async ({ envd, signal }) => ({
        bytesWritten: BigInt(await envd.replaceFile(path, user, chunks(), signal)),
      }));
    },

    async listDir(req, ctx) {
      const path = validatePath(req.path);
      const user = validateUser(req.user);
      const depth = validateDirDepth(req.depth);
      return withSandbox(manager, req.sandboxId, ctx.signal, async ({ envd, signal }) => {
        const { entries } = await envd.filesystem.listDir(
          { path, depth },
          { headers: userHeaders(user), signal, timeoutMs: LIST_DIR_TIMEOUT_MS },
        );
        return {
          entries: entries.slice(0, MAX_DIR_ENTRIES).map(dirEntry),
          truncated: entries.length > MAX_DIR_ENTRIES,
        };
      });
    },

    async pauseSandbox(req, ctx) {
      return { sandbox: proto(await manager.pause(validateSandboxId(req.sandboxId), ctx.signal)) };
    },

    async resumeSandbox(req, ctx) {
      const id = validateSandboxId(req.sandboxId);
      const timeoutSec = req.timeoutSec === undefined ? undefined : validateTimeoutSec(req.timeoutSec);
      const egress = req.egress ? { egress: validateEgress(req.egress) } : {};
      return { sandbox: proto(await manager.resume(id, { timeoutSec, ...egress }, ctx.signal)) };
    },

    async updateNetwork(req) {
      const id = validateSandboxId(req.sandboxId);
      await manager.updateNetwork(id, validateEgress(req.egress));
      return {};
    },

    pingSandbox(req) {
      manager.ping(validateSandboxId(req.sandboxId));
      return {};
    },

    setSandboxTimeout(req) {
      const timeoutSec = validateTimeoutSec(req.timeoutSec);
      manager.setTimeout(validateSandboxId(req.sandboxId), timeoutSec);
      return {};
    },

    async createSnapshot(req, ctx) {
      const id = validateSandboxId(req.sandboxId);
      const name = validateTemplateNameField(req.name);
      const template = await manager.createSnapshot(id, name, ctx.signal);
      return { template: await templateToProto(templates, template) };
    },

    async deleteSnapshot(req) {
      await manager.deleteTemplate(validateTemplateNameField(req.name));
      return {};
    },

    async flattenRootfs(req, ctx) {
      const id = validateSandboxId(req.sandboxId);
      const name = validateTemplateNameField(req.name);
      const template = await manager.flattenRootfs(id, name, ctx.signal);
      return { template: await templateToProto(templates, template) };
    },

    async importImage(req, ctx) {
      const params = validateImportImage(req);
      const template = await images.import(params, ctx.signal);
      const proto = await templateToProto(templates, template);
      const source = proto.source;
      return {
        template: proto,
        digest: source?.digest ?? '',
        env: source?.env ?? [],
        workdir: source?.workdir ?? '',
        user: source?.user ?? '',
      };
    },

    async *exportArtifact(req, ctx) {
      const target = validateArtifactRef(req.artifact, 'artifact');
      const bytes =
        target.kind === 'sandbox'
          ? manager.exportSandbox(target.name, ctx.signal)
          : await manager.exportTemplate(target.name, ctx.signal);
      yield* exportParts(req.artifact!, bytes);
    },

    async importArtifact(requests) {
      const { target, chunks, verify } = await importParts(requests);
      if (target.kind === 'sandbox') {
        const info = await manager.importSandbox(target.name, chunks, verify);
        return { sandbox: proto(info) };
      }
      const template = await manager.importTemplate(target.name, chunks, verify);
      return { template: await templateToProto(templates, template) };
    },

    async listTemplates() {
      return { templates: (await templates.list()).map(summaryToProto) };
    },

    getSandboxMetrics(req) {
      const range = validateMetricsRange(req.range);
      return { samples: manager.metrics(validateSandboxId(req.sandboxId), range).map(sampleToProto) };
    },

    flushSandboxMetrics(req) {
      const id = validateSandboxId(req.sandboxId);
      return {
        raw10m: manager.metrics(id, '10m').map(sampleToProto),
        avg30s2h: manager.metrics(id, '2h').map(sampleToProto),
        avg5m24h: manager.metrics(id, '24h').map(sampleToProto),
      };
    },

    async setWarmPool(req) {
      const { template, size } = validateWarmPool(req, config.maxSandboxes);
      // Only a template this host has can be pooled (0 is always allowed: it removes what is left).
      if (size > 0) await templates.resolve(template, 'template');
      return { pool: warmPoolToProto(await manager.setWarmPool(template, size)) };
    },

    listWarmPools() {
      return { pools: manager.listWarmPools().map(warmPoolToProto) };
    },
  };
}

function warmPoolToProto(pool: WarmPoolInfo): hostagent.WarmPool {
  return create(hostagent.WarmPoolSchema, {
    template: pool.template,
    size: pool.size,
    ready: pool.ready,
    claims: BigInt(pool.claims),
    misses: BigInt(pool.misses),
    refills: BigInt(pool.refills),
    failures: pool.failures,
    lastError: pool.lastError,
    lastErrorAt: pool.lastErrorAt ? timestampFromDate(pool.lastErrorAt) : undefined,
    vcpus: pool.sizes?.vcpus ?? 0,
    memoryMb: pool.sizes?.memoryMb ?? 0,
    diskMb: pool.sizes?.diskMb ?? 0,
  });
}

async function templateToProto(templates: TemplateStore, template: Template): Promise<hostagent.Template> {
  return summaryToProto(await templates.summarize(template));
}

function summaryToProto({ template, sizeBytes }: TemplateSummary): hostagent.Template {
  const common = { name: template.name, sizeBytes: BigInt(sizeBytes) };
  if (template.kind === 'image') {
    return create(hostagent.TemplateSchema, {
      ...common,
      kind: hostagent.TemplateKind.IMAGE,
      createdAt: timestampFromDate(template.createdAt),
      source: template.source && create(hostagent.ImageSourceSchema, template.source),
    });
  }
  const { meta } = template;
  return create(hostagent.TemplateSchema, {
    ...common,
    kind: hostagent.TemplateKind.SNAPSHOT,
    vcpus: meta.vcpus,
    memoryMb: meta.memoryMb,
    diskMb: meta.diskMb,
    baseImage: meta.baseImage,
    createdAt: timestampFromDate(new Date(meta.createdAt)),
  });
}

function sampleToProto(sample: MetricSample): hostagent.MetricSample {
  return create(hostagent.MetricSampleSchema, {
    time: timestampFromDate(new Date(sample.time)),
    cpuUsedPct: sample.cpuUsedPct,
    cpuCount: sample.cpuCount,
    memUsedBytes: BigInt(sample.memUsedBytes),
    memTotalBytes: BigInt(sample.memTotalBytes),
    diskUsedBytes: BigInt(sample.diskUsedBytes),
    diskTotalBytes: BigInt(sample.diskTotalBytes),
  });
}

/** A call's view of a running sandbox: its envd, and a signal that fires when either the caller goes away or the sandbox stops. */
interface SandboxCall {
  envd: EnvdClient;
  signal: AbortSignal;
}

/**
 * Runs one call against a running sandbox: it counts as activity while it runs, and a failure caused
 * by the sandbox stopping or dying is answered with the sandbox's reason instead.
 */
async function withSandbox<T>(
  manager: SandboxManager,
  sandboxId: string,
  callSignal: AbortSignal,
  fn: (call: SandboxCall) => Promise<T>,
): Promise<T> {
  const { envd, stopped, done } = manager.connection(validateSandboxId(sandboxId));
  try {
    return await fn({ envd, signal: AbortSignal.any([callSignal, stopped]) });
  } catch (err) {
    throw await explain(manager, sandboxId, stopped, err);
  } finally {
    done();
  }
}

/** `withSandbox` for a call that answers with a stream: activity lasts as long as the stream. */
async function* streamFromSandbox<T>(
  manager: SandboxManager,
  sandboxId: string,
  callSignal: AbortSignal,
  fn: (call: SandboxCall) => AsyncIterable<T>,
): AsyncGenerator<T> {
  const { envd, stopped, done } = manager.connection(validateSandboxId(sandboxId));
  try {
    yield* fn({ envd, signal: AbortSignal.any([callSignal, stopped]) });
  } catch (err) {
    throw await explain(manager, sandboxId, stopped, err);
  } finally {
    done();
  }
}

async function explain(
  manager: SandboxManager,
  sandboxId: string,
  stopped: AbortSignal,
  err: unknown,
): Promise<unknown> {
  if (stopped.aborted) return stopped.reason as unknown;
  // A connection that broke may mean the sandbox died; its reason beats "connection reset".
  const code = ConnectError.from(err).code;
  if (code === Code.Aborted || code === Code.Unavailable || code === Code.Internal || code === Code.Unknown) {
    return (await manager.deathOf(sandboxId)) ?? err;
  }
  return err;
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
  paused: hostagent.SandboxStatus.PAUSED,
  stopped: hostagent.SandboxStatus.STOPPED,
  error: hostagent.SandboxStatus.ERROR,
};

function toProto(info: SandboxInfo, envdAccessToken: string): hostagent.Sandbox {
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
    timeoutSec: info.timeoutSec,
    autoPaused: info.autoPaused,
    lastActiveAt: timestampFromDate(info.lastActiveAt),
    pausedAt: info.pausedAt ? timestampFromDate(info.pausedAt) : undefined,
    envdAccessToken,
    oomKills: info.oomKills ?? 0,
    lastOomKill: info.lastOomKill && {
      at: timestampFromDate(info.lastOomKill.at),
      pid: info.lastOomKill.pid,
      command: info.lastOomKill.command,
      memoryBytes: BigInt(info.lastOomKill.memoryBytes),
    },
  });
}

const ENTRY_TYPES: Record<filesystem.FileType, string> = {
  [filesystem.FileType.UNSPECIFIED]: 'other',
  [filesystem.FileType.FILE]: 'file',
  [filesystem.FileType.DIRECTORY]: 'dir',
  [filesystem.FileType.SYMLINK]: 'symlink',
};

/** envd's entry as the agent's API has it (its own message: envd's proto is E2B's, not ours). */
function dirEntry(e: filesystem.EntryInfo): MessageInitShape<typeof hostagent.DirEntrySchema> {
  return {
    name: e.name,
    path: e.path,
    type: ENTRY_TYPES[e.type] ?? 'other',
    size: e.size,
    modifiedTime: e.modifiedTime,
    permissions: e.permissions,
    symlinkTarget: e.symlinkTarget,
  };
}
