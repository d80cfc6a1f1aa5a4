import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import { ConnectError, Code } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { hostagent } from '@wrenn/contracts';
import { agentServerTlsOptions, generateKeyPair, peerIsControlPlane } from '@wrenn/pki';
import type { Db } from '../db/database.js';
import type { CallResult } from './api.js';
import { statusFromAgent } from '../services/reconciler.js';

// A registered host for the server's tests: registered over HTTP like a real agent, then serving a
// fake agent (sandboxes in a map) over mutual TLS with the certificate it was given, and answering
// HTTP/2 CONNECT `<sandboxId>:<port>` by joining the stream to `tunnelTo` (a local port).

export interface FakeHostOptions {
  /** Who adds the host (`Authorization` of an admin, or of a BYOC team's owner). */
  auth: Record<string, string>;
  teamId?: string;
  capacity?: { cpu_cores: number; memory_mb: number; disk_mb: number };
  /** Where CONNECT streams for running sandboxes go (a local TCP port). */
  tunnelTo?: number;
}

export interface FakeHost {
  id: string;
  address: string;
  accessToken: string;
  refreshToken: string;
  certificate: string;
  caCertificate: string;
  /** What the agent holds. */
  sandboxes: Map<string, hostagent.SandboxStatus>;
  /** Templates it holds, by the agent's name (the bytes it exports). */
  templates: Map<string, Buffer>;
  /** Names of what ImportArtifact took (sandboxes and templates). */
  imported: string[];
  created: string[];
  destroyed: string[];
  /** CONNECT requests the agent received (authority each). */
  tunnels: string[];
  /** Each RPC it was called with, and the `X-Request-Id` the call carried ('' when none). */
  calls: { method: string; requestId: string }[];
  /** While set, an export sends its header and then waits for this (a transfer caught mid-way). */
  exportGate?: Promise<void>;
  /** Exports that ended before their last part (the control plane went away or gave up). */
  exportsCut: string[];
  /** Its warm pools (template → size); every pooled sandbox is ready at once. */
  warmPools: Map<string, number>;
  /** Creates the pools served (template each). */
  claimed: string[];
  /** HTTP/2 sessions (TLS connections) the control plane opened to it. */
  readonly sessionCount: number;
  heartbeat(
    sandboxes?: { id: string; status: string; paused_unsupervised?: boolean }[],
    token?: string,
  ): Promise<CallResult>;
  stop(): Promise<void>;
}

type Call = (
  method: string,
  path: string,
  opts?: { body?: unknown; headers?: Record<string, string> },
) => Promise<CallResult>;

export async function startFakeHost(call: Call, opts: FakeHostOptions): Promise<FakeHost> {
  const capacity = opts.capacity ?? { cpu_cores: 8, memory_mb: 16_384, disk_mb: 200_000 };
  const added = await call('POST', '/v1/hosts', {
    body: opts.teamId ? { team_id: opts.teamId } : {},
    headers: opts.auth,
  });
  if (added.status !== 201) throw new Error(`POST /v1/hosts: ${added.status} ${JSON.stringify(added.body)}`);
  const token = added.body.registration_token as string;
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const keys = await generateKeyPair();
  const registered = await call('POST', '/v1/hosts/register', {
    body: {
      registration_token: token,
      arch: 'x86_64',
      ...capacity,
      address,
      public_key: keys.publicKeyPem,
      agent_version: 'test',
    },
  });
  if (registered.status !== 200)
    throw new Error(`register: ${registered.status} ${JSON.stringify(registered.body)}`);
  const creds = registered.body as Record<string, string>;

  const sandboxes = new Map<string, hostagent.SandboxStatus>();
  const created: string[] = [];
  const destroyed: string[] = [];
  const tunnels: string[] = [];
  const calls: { method: string; requestId: string }[] = [];
  const templates = new Map<string, Buffer>();
  const imported: string[] = [];
  const exportsCut: string[] = [];
  const warmPools = new Map<string, number>();
  const claimed: string[] = [];
  /** The images a fake host has, besides the templates it holds. */
  const images = new Set(['base']);
  const warmPool = (template: string) =>
    create(hostagent.WarmPoolSchema, {
      template,
      size: warmPools.get(template) ?? 0,
      ready: warmPools.get(template) ?? 0,
      claims: BigInt(claimed.filter((t) => t === template).length),
    });
  const info = (id: string) =>
    create(hostagent.SandboxSchema, {
      id,
      status: sandboxes.get(id) ?? hostagent.SandboxStatus.UNSPECIFIED,
      vcpus: 1,
      memoryMb: 512,
      diskMb: 1024,
      envdAddress: '10.99.0.2:49983',
    });
  const known = (id: string) => {
    if (!sandboxes.has(id)) throw new ConnectError(`sandbox ${id} not found`, Code.NotFound);
    return id;
  };
  /** Commands and files need a running sandbox, as on a real agent. */
  const running = (id: string) => {
    if (sandboxes.get(known(id)) !== hostagent.SandboxStatus.RUNNING)
      throw new ConnectError(`sandbox ${id} is not running`, Code.FailedPrecondition);
    return id;
  };
  // A sandbox's files, by path: what its file RPCs write and read back.
  const files = new Map<string, Map<string, Buffer>>();
  const filesOf = (id: string) => {
    running(id);
    let byPath = files.get(id);
    if (!byPath) files.set(id, (byPath = new Map<string, Buffer>()));
    return byPath;
  };
  const readFile = (id: string, path: string) => {
    const content = filesOf(id).get(path);
    if (!content) throw new ConnectError(`${path}: no such file`, Code.NotFound);
    return content;
  };
  const template = (name: string, kind: hostagent.TemplateKind) =>
    create(hostagent.TemplateSchema, { name, kind, sizeBytes: 10n });
  const rpc = connectNodeAdapter({
    interceptors: [
      (next) => (req) => {
        calls.push({ method: req.method.name, requestId: req.header.get('x-request-id') ?? '' });
        return next(req);
      },
    ],
    routes: (router) =>
      router.service(hostagent.HostAgentService, {
        createSandbox: (req) => {
          created.push(req.sandboxId);
          if (warmPools.get(req.template)) claimed.push(req.template);
          sandboxes.set(req.sandboxId, hostagent.SandboxStatus.RUNNING);
          return {
            sandbox: create(hostagent.SandboxSchema, {
              ...info(req.sandboxId),
              vcpus: req.vcpus || 1,
              memoryMb: req.memoryMb || 512,
              diskMb: req.diskMb || 4096,
              timeoutSec: req.timeoutSec,
              metadata: req.metadata,
            }),
          };
        },
        destroySandbox: (req) => {
          destroyed.push(req.sandboxId);
          sandboxes.delete(known(req.sandboxId));
          return {};
        },
        getSandbox: (req) => ({ sandbox: info(known(req.sandboxId)) }),
        listSandboxes: () => ({ sandboxes: [...sandboxes.keys()].map(info) }),
        flushSandboxMetrics: () => ({}),
        // Commands finish at once, quietly and well; no process lives on to take input.
        exec: (req) => {
          running(req.sandboxId);
          return { exitCode: 0, pid: 1 };
        },
        async *execStream(req) {
          await Promise.resolve(running(req.sandboxId));
          yield { event: { case: 'started', value: { pid: 1 } } };
          yield { event: { case: 'exited', value: { exitCode: 0, status: 'exit status 0' } } };
        },
        sendExecInput: (req) => {
          running(req.sandboxId);
          throw new ConnectError(`process ${req.pid} not found`, Code.NotFound);
        },
        resizeExecPty: (req) => {
          running(req.sandboxId);
          throw new ConnectError(`process ${req.pid} not found`, Code.NotFound);
        },
        readFile: (req) => ({ content: readFile(req.sandboxId, req.path) }),
        async *readFileStream(req) {
          yield { chunk: await Promise.resolve(readFile(req.sandboxId, req.path)) };
        },
        writeFile: (req) => {
          filesOf(req.sandboxId).set(req.path, Buffer.from(req.content));
          return { bytesWritten: BigInt(req.content.length) };
        },
        async writeFileStream(requests) {
          let header: hostagent.WriteFileHeader | undefined;
          const chunks: Buffer[] = [];
          for await (const { part } of requests) {
            if (part.case === 'header') header = part.value;
            if (part.case === 'chunk') chunks.push(Buffer.from(part.value));
          }
          if (!header) throw new ConnectError('no header', Code.InvalidArgument);
          const content = Buffer.concat(chunks);
          filesOf(header.sandboxId).set(header.path, content);
          return { bytesWritten: BigInt(content.length) };
        },
        listDir: (req) => {
          const dir = req.path.endsWith('/') ? req.path : `${req.path}/`;
          const entries = [...filesOf(req.sandboxId)]
            .filter(([path]) => path.startsWith(dir) && !path.slice(dir.length).includes('/'))
            .map(([path, content]) =>
              create(hostagent.DirEntrySchema, {
                name: path.slice(dir.length),
                path,
                type: 'file',
                size: BigInt(content.length),
                permissions: '-rw-r--r--',
              }),
            );
          return { entries };
        },
        setSandboxTimeout: (req) => {
          known(req.sandboxId);
          return {};
        },
        getSandboxMetrics: (req) => {
          known(req.sandboxId);
          return { samples: [] };
        },
        listTemplates: () => ({
          templates: [
            ...[...images].map((name) => template(name, hostagent.TemplateKind.IMAGE)),
            ...[...templates.keys()].map((name) => template(name, hostagent.TemplateKind.SNAPSHOT)),
          ],
        }),
        setWarmPool: (req) => {
          if (req.size > 0 && !images.has(req.template) && !templates.has(req.template))
            throw new ConnectError(`template ${req.template} not found`, Code.NotFound);
          warmPools.set(req.template, req.size);
          return { pool: warmPool(req.template) };
        },
        listWarmPools: () => ({ pools: [...warmPools.keys()].map(warmPool) }),
        pingSandbox: () => ({}),
        updateNetwork: (req) => {
          known(req.sandboxId);
          return {};
        },
        pauseSandbox: (req) => {
          sandboxes.set(known(req.sandboxId), hostagent.SandboxStatus.PAUSED);
          return { sandbox: info(req.sandboxId) };
        },
        resumeSandbox: (req) => {
          sandboxes.set(known(req.sandboxId), hostagent.SandboxStatus.RUNNING);
          return { sandbox: info(req.sandboxId) };
        },
        createSnapshot: (req) => {
          known(req.sandboxId);
          templates.set(req.name, Buffer.from(`template ${req.name} from ${req.sandboxId}`));
          return { template: { name: req.name, vcpus: 1, memoryMb: 512, diskMb: 1024, sizeBytes: 10n } };
        },
        deleteSnapshot: (req) => {
          if (!templates.delete(req.name))
            throw new ConnectError(`template ${req.name} not found`, Code.NotFound);
          return {};
        },
        // What an agent exports is opaque to the control plane: any bytes with their digest will do.
        async *exportArtifact(req, ctx) {
          const name = req.artifact?.name ?? '';
          const isSandbox = req.artifact?.kind === hostagent.ArtifactKind.SANDBOX;
          if (isSandbox && sandboxes.get(name) !== hostagent.SandboxStatus.PAUSED)
            throw new ConnectError(`sandbox ${name} is not paused`, Code.FailedPrecondition);
          const bytes = await Promise.resolve(
            isSandbox ? Buffer.from(`checkpoint of ${name}`) : templates.get(name),
          );
          if (!bytes) throw new ConnectError(`template ${name} not found`, Code.NotFound);
          yield { part: { part: { case: 'header', value: req.artifact! } } };
          let sent = false;
          try {
            if (host.exportGate)
              await Promise.race([
                host.exportGate,
                new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve())),
              ]);
            ctx.signal.throwIfAborted();
            yield { part: { part: { case: 'chunk', value: bytes } } };
            sent = true;
          } finally {
            if (!sent) exportsCut.push(name);
          }
          const sha256 = createHash('sha256').update(bytes).digest('hex');
          yield { part: { part: { case: 'end', value: { size: BigInt(bytes.length), sha256 } } } };
        },
        async importArtifact(requests) {
          let header: hostagent.ArtifactRef | undefined;
          const chunks: Buffer[] = [];
          let end: hostagent.ArtifactEnd | undefined;
          for await (const { part } of requests) {
            if (part?.part.case === 'header') header = part.part.value;
            if (part?.part.case === 'chunk') chunks.push(Buffer.from(part.part.value));
            if (part?.part.case === 'end') end = part.part.value;
          }
          const bytes = Buffer.concat(chunks);
          if (!header || !end || end.sha256 !== createHash('sha256').update(bytes).digest('hex'))
            throw new ConnectError('transfer incomplete or corrupted', Code.DataLoss);
          imported.push(header.name);
          if (header.kind === hostagent.ArtifactKind.SANDBOX) {
            if (sandboxes.has(header.name)) throw new ConnectError('already here', Code.AlreadyExists);
            sandboxes.set(header.name, hostagent.SandboxStatus.PAUSED);
            return { sandbox: info(header.name) };
          }
          if (templates.has(header.name)) throw new ConnectError('already here', Code.AlreadyExists);
          templates.set(header.name, bytes);
          return { template: { name: header.name } };
        },
      }),
  });
  const server = http2.createSecureServer(
    agentServerTlsOptions({
      keyPem: keys.privateKeyPem,
      certPem: creds.certificate!,
      caPem: creds.ca_certificate!,
    }),
    rpc,
  );
  // Node's compatibility layer answers CONNECT 405 unless a 'connect' listener takes it.
  server.on('connect', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const authority = req.headers[':authority'] ?? '';
    tunnels.push(authority);
    const [id = ''] = authority.split(':');
    if (sandboxes.get(id) !== hostagent.SandboxStatus.RUNNING || !opts.tunnelTo) {
      res.writeHead(404);
      res.end();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: opts.tunnelTo }, () => {
      res.writeHead(200);
      req.pipe(upstream);
      upstream.pipe(res);
    });
    upstream.on('error', () => res.stream.close(http2.constants.NGHTTP2_CONNECT_ERROR));
    res.stream.on('close', () => upstream.destroy());
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    if (!peerIsControlPlane(socket)) socket.destroy();
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => sessions.add(s));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));

  const host: FakeHost = {
    id: creds.host_id!,
    address,
    accessToken: creds.access_token!,
    refreshToken: creds.refresh_token!,
    certificate: creds.certificate!,
    caCertificate: creds.ca_certificate!,
    sandboxes,
    templates,
    imported,
    created,
    destroyed,
    tunnels,
    calls,
    exportsCut,
    warmPools,
    claimed,
    get sessionCount() {
      return sessions.size;
    },
    heartbeat: (list, token) =>
      call('POST', '/v1/hosts/heartbeat', {
        headers: { authorization: `Bearer ${token ?? host.accessToken}` },
        body: {
          capacity,
          load: { cpu_pct: 12.5, memory_used_mb: 2048, disk_used_mb: 10_000 },
          sandboxes: list ?? [...sandboxes].map(([id, status]) => ({ id, status: statusFromAgent(status) })),
        },
      }),
    async stop() {
      for (const s of sessions) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  return host;
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

/**
 * Runs `fn` with `count` fake hosts added by `auth` (an admin's: platform hosts), each online after
 * a heartbeat; the test server's static host (a dead port) is out of the way meanwhile. The hosts
 * are stopped and deleted afterwards.
 */
export async function withFakeHosts<T>(
  api: { call: Call; db: Db },
  count: number,
  auth: Record<string, string>,
  fn: (hosts: FakeHost[]) => Promise<T>,
): Promise<T> {
  await api.db.updateTable('hosts').set({ status: 'deleted' }).where('is_static', '=', true).execute();
  const hosts: FakeHost[] = [];
  try {
    // One at a time, so a test can place its first sandbox before the others exist.
    for (let i = 0; i < count; i++) hosts.push(await startFakeHost(api.call, { auth }));
    for (const h of hosts) {
      const beat = await h.heartbeat();
      if (beat.status !== 200) throw new Error(`heartbeat of a fake host: ${beat.status}`);
    }
    return await fn(hosts);
  } finally {
    await Promise.all(hosts.map((h) => h.stop()));
    const ids = hosts.map((h) => h.id);
    if (ids.length)
      await api.db.updateTable('hosts').set({ status: 'deleted' }).where('id', 'in', ids).execute();
  }
}
