import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import {
  createAsyncIterable,
  readAllBytes,
  type UniversalHandler,
  type UniversalHandlerFn,
} from '@connectrpc/connect/protocol';
import { codeFromString, codeToString } from '@connectrpc/connect/protocol-connect';
import { filesystem as fspb, process as processpb } from '@wrenn/contracts';
import { Code, ConnectError, httpStatusFromCode, type Logger } from '@wrenn/core';
import { authorize } from './auth/request-auth.js';
import { createFilesystemService } from './filesystem/filesystem-service.js';
import { handleCors } from './http/cors.js';
import { handleDownload } from './http/files-download.js';
import { handleUpload } from './http/files-upload.js';
import { MetricsRoute } from './http/metrics.js';
import { sendConnectError, sendEnvdError, sendJson, sendNoContent } from './http/responses.js';
import { handleEnvs, handleInit, headerValue } from './init/init-routes.js';
import { SandboxDefaults } from './init/sandbox-defaults.js';
import { defaultForkServerPaths, ForkServer } from './process/fork-server.js';
import { findSetpriv } from './process/launch.js';
import { killLargestProcess } from './process/oom-kill.js';
import { createProcessService } from './process/process-service.js';
import { ProcessTable } from './process/process-table.js';
import { RequestUsers } from './users/request-user.js';
import { UserDirectory, type UserDirectoryOptions } from './users/user-directory.js';

export interface EnvdServerOptions {
  logger: Logger;
  /** ENVD_DEFAULT_USER. */
  defaultUser?: string;
  processBufferBytes?: number;
  finishedProcessRetentionMs?: number;
  /** Where to look for the fork-server binary; empty = pipe processes always come from Node. */
  forkServerPaths?: readonly string[];
  /** Where the user database lives (tests point it elsewhere). */
  userFiles?: UserDirectoryOptions;
}

export interface EnvdServer {
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * For checkpointing: stop listening and drop every open connection (streams end, clients
   * reconnect later). Started processes keep running and keep buffering their output.
   */
  quiesce(): Promise<void>;
  /** Listen again on the address of the last listen(). */
  resume(): Promise<AddressInfo>;
  /** Stop serving for good. Processes keep running unless killProcesses. */
  close(opts?: { killProcesses?: boolean }): Promise<void>;
  readonly isListening: boolean;
}

// Connect paths look like /package.Service/Method.
const rpcPath = /^\/[A-Za-z_][\w.]*\.[A-Za-z_]\w*\/[A-Za-z_]\w*$/;

/** Builds envd: one HTTP server carrying the Connect services and the REST routes of E2B's envd. */
export async function createEnvdServer(opts: EnvdServerOptions): Promise<EnvdServer> {
  const { logger } = opts;
  const defaults = new SandboxDefaults(opts.defaultUser);
  const users = new RequestUsers(new UserDirectory(opts.userFiles), defaults);
  const setprivPath = await findSetpriv();
  if (!setprivPath) logger.warn('setpriv not found: processes of other users get no supplementary groups');
  // Not waited for: envd listens while the fork-server starts (a process start inside gVisor, on the
  // path of every cold create otherwise). The first Start waits for it; it never rejects.
  let forkServer: ForkServer | undefined;
  const forkServerStarted = ForkServer.start({
    paths: opts.forkServerPaths ?? defaultForkServerPaths(),
    setprivPath,
    logger,
  }).then(
    (started) => (forkServer = started),
    (err: unknown) => {
      logger.warn({ err }, 'fork-server failed to start: Node spawns pipe processes');
      return undefined;
    },
  );
  const table = new ProcessTable(opts.finishedProcessRetentionMs ?? 60_000, logger);
  const filesystemService = createFilesystemService({ users, logger });
  const metrics = new MetricsRoute();

  // Clients only see a code and message; the cause of an internal failure belongs in our log.
  const logRpcErrors: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const cerr = ConnectError.from(err);
      if (isUndecodableInput(cerr.code, cerr.rawMessage))
        throw new ConnectError(cerr.rawMessage, Code.InvalidArgument);
      const fields = { rpc: `${req.service.typeName}/${req.method.name}`, code: Code[cerr.code] };
      if (cerr.code === Code.Internal || cerr.code === Code.Unknown) {
        logger.warn({ ...fields, err: cerr.cause ?? err }, 'rpc failed');
      } else {
        logger.debug({ ...fields, message: cerr.rawMessage }, 'rpc refused');
      }
      throw err;
    }
  };

  const rpc = connectNodeAdapter({
    interceptors: [logRpcErrors],
    routes(router) {
      router.service(
        processpb.Process,
        createProcessService({
          table,
          users,
          defaults,
          setprivPath,
          forkServer: forkServerStarted,
          bufferBytes: opts.processBufferBytes ?? 16 * 1024 * 1024,
          logger,
        }),
      );
      router.service(fspb.Filesystem, filesystemService);
      router.handlers.forEach((handler, i) => (router.handlers[i] = refuseUndecodableUnary(handler)));
    },
    // The Python SDK's codec and newer clients may send fields this build does not know.
    jsonOptions: { ignoreUnknownFields: true },
    fallback: (req, res) => sendUnknownRoute(req as IncomingMessage, res as ServerResponse),
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (handleCors(req, res)) return;
    normalizeTimeoutHeader(req);
    const url = requestUrl(req.url);
    if (!url) return sendEnvdError(res, 400, 'malformed request target');
    const method = req.method ?? 'GET';
    const isRead = method === 'GET' || method === 'HEAD';

    switch (url.pathname) {
      case '/health':
        return isRead ? sendNoContent(res) : sendMethodNotAllowed(res, 'GET');
      case '/init':
        return method === 'POST' ? handleInit(req, res, defaults, logger) : sendMethodNotAllowed(res, 'POST');
      case '/files': {
        if (!isRead && method !== 'POST') return sendMethodNotAllowed(res, 'GET, POST');
        const decision = authorize(defaults.accessToken, headerValue(req, 'x-access-token'), {
          operation: isRead ? 'read' : 'write',
          query: url.searchParams,
        });
        if (!decision.allowed) return sendEnvdError(res, 401, decision.message);
        return isRead
          ? handleDownload(req, res, url.searchParams, users, logger)
          : handleUpload(req, res, url.searchParams, users, logger);
      }
    }

    const decision = authorize(defaults.accessToken, headerValue(req, 'x-access-token'));
    if (!decision.allowed) {
      return rpcPath.test(url.pathname)
        ? sendConnectError(res, new ConnectError(decision.message, Code.Unauthenticated))
        : sendEnvdError(res, 401, decision.message);
    }
    switch (url.pathname) {
      case '/envs':
        return isRead ? handleEnvs(res, defaults) : sendMethodNotAllowed(res, 'GET');
      case '/metrics':
        return isRead ? metrics.handle(res) : sendMethodNotAllowed(res, 'GET');
      case '/oom-kill':
        return method === 'POST' ? handleOomKill(res) : sendMethodNotAllowed(res, 'POST');
      default:
        rpc(req, res);
    }
  }

  // Wrenn's own route (not E2B's): the agent calls it when the sandbox's memory went past its limit,
  // and the process the kernel's OOM killer would choose is killed. Never init, envd or its fork-server:
  // without them the sandbox is unusable.
  function handleOomKill(res: ServerResponse): void {
    const started = performance.now();
    const protectedPids = new Set([1, process.pid, ...(forkServer?.pid ? [forkServer.pid] : [])]);
    const victim = killLargestProcess(protectedPids);
    if (!victim) return sendNoContent(res);
    logger.warn(
      { ...victim, ms: Math.round(performance.now() - started) },
      'out of memory: killed the largest process',
    );
    sendJson(res, 200, { pid: victim.pid, command: victim.command, rss_bytes: victim.rssBytes });
  }

  const server = createServer({ requestTimeout: 0 }, (req, res) => {
    route(req, res).catch((err: unknown) => {
      logger.error({ err, method: req.method, url: req.url }, 'request failed');
      if (!res.headersSent) sendEnvdError(res, 500, 'internal error');
      else res.destroy();
    });
  });
  // Node closes an idle keep-alive connection after 5 s; a client reusing it at that moment gets
  // ECONNRESET (the agent did, after a 5 s upload). Idle connections stay open for 10 minutes.
  server.keepAliveTimeout = 10 * 60_000;
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('clientError', (err, socket) => {
    logger.debug({ err }, 'client error');
    socket.destroy();
  });

  let lastAddress: { port: number; host: string } | undefined;
  // While quiesced nothing else may keep the event loop alive (signal listeners don't), and Node
  // would exit: hold it open until resume or close.
  let quiescedHold: NodeJS.Timeout | undefined;

  function listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        const address = server.address() as AddressInfo;
        // Resume must come back on the same port even when the first listen asked for port 0.
        lastAddress = { port: address.port, host };
        logger.info({ host, port: address.port }, 'listening');
        resolve(address);
      });
    });
  }

  async function stopListening(): Promise<void> {
    if (!server.listening) {
      for (const socket of sockets) socket.destroy();
      return;
    }
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  }

  return {
    listen,
    async quiesce() {
      quiescedHold ??= setInterval(() => undefined, 60_000);
      await stopListening();
      logger.info(
        { runningProcesses: table.running().length },
        'quiesced: not listening, connections closed',
      );
    },
    async resume() {
      if (server.listening) return server.address() as AddressInfo;
      if (!lastAddress) throw new Error('resume before listen');
      const address = await listen(lastAddress.port, lastAddress.host);
      clearInterval(quiescedHold);
      quiescedHold = undefined;
      return address;
    },
    async close(closeOpts = {}) {
      clearInterval(quiescedHold);
      quiescedHold = undefined;
      await stopListening();
      filesystemService.closeWatchers();
      if (closeOpts.killProcesses) table.killAll();
      (await forkServerStarted)?.close();
    },
    get isListening() {
      return server.listening;
    },
  };
}

// Longest delay a Node timer can hold; beyond it setTimeout fires after 1 ms.
const maxTimerMs = 2 ** 31 - 1;

/**
 * E2B treats Connect-Timeout-Ms 0 as "no limit" (the process lifetime of Start), while connect-es
 * would expire the call at once; and values past what a timer holds would fire immediately too.
 */
function normalizeTimeoutHeader(req: IncomingMessage): void {
  const raw = req.headers['connect-timeout-ms'];
  if (typeof raw !== 'string' || !/^\d+$/.test(raw)) return;
  const ms = Number(raw);
  if (ms === 0) delete req.headers['connect-timeout-ms'];
  else if (ms > maxTimerMs) req.headers['connect-timeout-ms'] = String(maxTimerMs);
}

/**
 * connect-es's own answers to a request it cannot decode: a body that is not protobuf, a truncated
 * gzip body and a frame flagged compressed without an encoding are `internal` (500), a stream
 * without its one message `unimplemented` (501). Each is the client's mistake, so envd answers
 * `invalid_argument` (400) instead (found by fuzz.int.test.ts).
 */
function isUndecodableInput(code: Code, message: string): boolean {
  return (
    (code === Code.Internal && message.startsWith('parse binary: ')) ||
    (code === Code.Internal && message.startsWith('received compressed envelope, but do not know how')) ||
    (code === Code.Internal && message === 'decompression failed') ||
    (code === Code.Unimplemented && /^protocol error: (missing|received extra) input message/.test(message))
  );
}

/**
 * A unary request is decoded before any interceptor runs (so logRpcErrors never sees that
 * failure): its error answer is rewritten here.
 */
function refuseUndecodableUnary(handler: UniversalHandler): UniversalHandler {
  const wrapped: UniversalHandlerFn = async (req) => {
    const res = await handler(req);
    if (res.status !== 500 || !res.body || res.header?.get('content-encoding')) return res;
    const bytes = await readAllBytes(res.body, Number.MAX_SAFE_INTEGER);
    let error: { code?: unknown; message?: unknown } = {};
    try {
      error = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof error;
    } catch {
      // not Connect's JSON error: passed on as it was
    }
    const code = typeof error.code === 'string' ? codeFromString(error.code) : undefined;
    if (code === undefined || typeof error.message !== 'string' || !isUndecodableInput(code, error.message))
      return { ...res, body: createAsyncIterable([bytes]) };
    const body = Buffer.from(
      JSON.stringify({ code: codeToString(Code.InvalidArgument), message: error.message }),
    );
    res.header?.set('content-length', String(body.length));
    return { ...res, status: httpStatusFromCode(Code.InvalidArgument), body: createAsyncIterable([body]) };
  };
  return Object.assign(wrapped, handler);
}

/**
 * The request's URL: a path is taken as a path (`//` as well, which `new URL` would read as a
 * host, and fail on), anything else resolved as before; undefined when it is no URL at all.
 */
function requestUrl(target = '/'): URL | undefined {
  try {
    return target.startsWith('/') ? new URL(`http://envd${target}`) : new URL(target, 'http://envd');
  } catch {
    return undefined;
  }
}

function sendMethodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  sendEnvdError(res, 405, 'method not allowed');
}

function sendUnknownRoute(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
  if (rpcPath.test(path)) {
    // Connect clients read the code from the body; a bare 404 would turn into "unimplemented" anyway
    // but without a message.
    res.statusCode = 404;
    const body = JSON.stringify({ code: 'unimplemented', message: `${path} is not implemented` });
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  sendEnvdError(res, 404, `no route for ${req.method ?? 'GET'} ${path}`);
}
