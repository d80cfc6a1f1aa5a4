import http from 'node:http';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { Code, ConnectError, type Logger } from '@wrenn/core';
import { RetryingAgent } from './retrying-agent.js';
import { filesystem, process as processpb } from '@wrenn/contracts';

export interface EnvdInit {
  envVars?: Record<string, string>;
  accessToken?: string;
  defaultUser?: string;
}

/**
 * The agent's connection to one sandbox's envd. envd runs next to untrusted code, so everything it
 * answers is bounded in time and size by the callers.
 */
export class EnvdClient {
  readonly process: Client<typeof processpb.Process>;
  readonly filesystem: Client<typeof filesystem.Filesystem>;
  private readonly agent: http.Agent;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly accessToken: string,
    logger?: Logger,
  ) {
    this.agent = new RetryingAgent({ keepAlive: true, maxSockets: 64 }, (err, attempt) =>
      logger?.warn({ err: err.code, attempt, host }, 'envd connect failed; retrying'),
    );
    const transport = createConnectTransport({
      baseUrl: `http://${host}:${port}`,
      httpVersion: '1.1',
      useBinaryFormat: true,
      nodeOptions: { agent: this.agent },
      interceptors: [
        (next) => (req) => {
          req.header.set('X-Access-Token', this.accessToken);
          return next(req);
        },
      ],
    });
    this.process = createClient(processpb.Process, transport);
    this.filesystem = createClient(filesystem.Filesystem, transport);
  }

  /** Polls GET /health until envd answers; envd listens a few hundred ms after the runtime starts. */
  async waitHealthy(
    timeoutMs: number,
    signal?: AbortSignal,
    hasExited: () => Promise<boolean> = () => Promise.resolve(false),
  ) {
    const deadline = Date.now() + timeoutMs;
    let lastError = 'no answer';
    let nextExitCheck = 0;
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      // Asking the runtime costs tens of ms, so only twice a second; polling envd is cheap.
      if (Date.now() >= nextExitCheck) {
        if (await hasExited())
          throw new ConnectError('the sandbox exited while starting', Code.FailedPrecondition);
        nextExitCheck = Date.now() + 500;
      }
      try {
        const res = await this.request('GET', '/health', { timeoutMs: 1000 });
        res.resume();
        if (res.statusCode === 204 || res.statusCode === 200) return;
        lastError = `status ${res.statusCode}`;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new ConnectError(
      `envd did not become healthy within ${timeoutMs} ms (${lastError})`,
      Code.Unavailable,
    );
  }

  async init(body: EnvdInit): Promise<void> {
    const res = await this.request('POST', '/init', {
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
      timeoutMs: 10_000,
    });
    await expectOk(res, 'envd /init');
  }

  /** GET /files: the response streams the file. */
  async download(path: string, user: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const res = await this.request('GET', `/files?${filesQuery(path, user)}`, { signal, timeoutMs: 30_000 });
    if (res.statusCode !== 200) await expectOk(res, `read ${path}`);
    return res;
  }

  /** POST /files with a raw body streamed from `chunks`; resolves with the bytes sent. */
  async upload(
    path: string,
    user: string,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<number> {
    const req = http.request({
      host: this.host,
      port: this.port,
      method: 'POST',
      path: `/files?${filesQuery(path, user)}`,
      agent: this.agent,
      signal,
      headers: { 'content-type': 'application/octet-stream', 'x-access-token': this.accessToken },
    });
    const response = new Promise<http.IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
    });
    let sent = 0;
    try {
      for await (const chunk of chunks) {
        sent += chunk.byteLength;
        if (!req.write(chunk)) await new Promise<void>((r) => req.once('drain', r));
      }
      req.end();
    } catch (err) {
      req.destroy();
      throw err;
    }
    await expectOk(await response, `write ${path}`);
    return sent;
  }

  close(): void {
    this.agent.destroy();
  }

  private request(
    method: string,
    path: string,
    opts: { body?: string; headers?: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
  ): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          signal: opts.signal,
          timeout: opts.timeoutMs,
          headers: { ...opts.headers, 'x-access-token': this.accessToken },
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(opts.body);
    });
  }
}

function filesQuery(path: string, user: string): string {
  const q = new URLSearchParams({ path });
  if (user) q.set('username', user);
  return q.toString();
}

// envd answers errors as {code, message} with an HTTP status; carry both into a Connect error.
async function expectOk(res: http.IncomingMessage, what: string): Promise<void> {
  const status = res.statusCode ?? 0;
  if (status >= 200 && status < 300) {
    res.resume();
    return;
  }
  let text = '';
  for await (const chunk of res) {
    if (text.length < 4096) text += (chunk as Buffer).toString('utf8');
  }
  let message = text.slice(0, 1000);
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch {
    // not JSON: keep the text
  }
  throw new ConnectError(`${what}: ${message}`, codeFromHttpStatus(status));
}

function codeFromHttpStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.NotFound;
    case 409:
      return Code.AlreadyExists;
    case 413:
    case 507:
      return Code.ResourceExhausted;
    default:
      return status >= 500 ? Code.Unavailable : Code.Unknown;
  }
}
