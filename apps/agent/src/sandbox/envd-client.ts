import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { Code, codeFromHttpStatus, ConnectError, pollUntil, type Logger } from '@wrenn/core';
import { RetryingAgent } from './retrying-agent.js';
import { filesystem, process as processpb } from '@wrenn/contracts';

export interface EnvdInit {
  envVars?: Record<string, string>;
  accessToken?: string;
  defaultUser?: string;
  defaultWorkdir?: string;
}

/**
 * The agent's connection to one sandbox's envd. envd runs next to untrusted code, so everything it
 * answers is bounded in time and size by the callers.
 */
/** envd's way of naming the Linux user a call acts as (E2B's: Basic auth with an empty password). */
export function userHeaders(user: string): Headers {
  const headers = new Headers();
  if (user) headers.set('Authorization', `Basic ${Buffer.from(`${user}:`).toString('base64')}`);
  return headers;
}

// How long after a failed upload its partial file is removed a second time.
const LATE_PARTIAL_REMOVE_MS = 1000;

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

  /**
   * Polls GET /health until envd answers; envd listens a few hundred ms after the runtime starts.
   * `onRefused` runs once, at the first refused connection (a restored envd that is not listening).
   */
  async waitHealthy(
    timeoutMs: number,
    signal?: AbortSignal,
    hasExited: () => Promise<boolean> = () => Promise.resolve(false),
    onRefused?: () => Promise<void>,
  ) {
    let lastError = 'no answer';
    // A connection whose first packet was lost waits out the kernel's 1 s SYN retransmission (seen
    // once in 30 restores); a fresh one after 200 ms is sooner. Doubled after each timeout, up to
    // 1 s, so an envd slow to answer still gets the time.
    let attemptMs = 200;
    // envd usually answers within tens of ms: ask the runtime only once that has not happened.
    let nextExitCheck = Date.now() + 200;
    const healthy = await pollUntil(
      async () => {
        // Asking the runtime costs tens of ms, so only twice a second; polling envd is cheap.
        if (Date.now() >= nextExitCheck) {
          if (await hasExited())
            throw new ConnectError('the sandbox exited while starting', Code.FailedPrecondition);
          nextExitCheck = Date.now() + 500;
        }
        try {
          const res = await this.request('GET', '/health', { timeoutMs: attemptMs });
          res.resume();
          if (res.statusCode === 204 || res.statusCode === 200) return true;
          lastError = `status ${res.statusCode}`;
        } catch (err) {
          lastError = err instanceof Error ? err.message : String(err);
          if (err instanceof RequestTimeout) attemptMs = Math.min(attemptMs * 2, 1000);
          if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED' && onRefused) {
            const wake = onRefused;
            onRefused = undefined;
            await wake();
          }
        }
        return undefined;
      },
      { timeoutMs, intervalMs: 10, signal },
    );
    if (healthy) return;
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

  /**
   * POST /oom-kill: envd kills the process the kernel's OOM killer would choose (never init, envd or
   * its fork-server). Undefined when there was none to kill.
   */
  async oomKill(): Promise<{ pid: number; command: string; rssBytes: number } | undefined> {
    const res = await this.request('POST', '/oom-kill', { timeoutMs: 5_000 });
    if (res.statusCode === 204) {
      res.resume();
      return undefined;
    }
    if (res.statusCode !== 200) await expectOk(res, 'envd /oom-kill');
    let text = '';
    for await (const chunk of res) text += (chunk as Buffer).toString('utf8');
    const body = JSON.parse(text) as { pid: number; command: string; rss_bytes: number };
    return { pid: body.pid, command: body.command, rssBytes: body.rss_bytes };
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
    // envd may answer before it has read the whole body (a bad path, a full disk): that answer,
    // not the broken pipe it causes, is the error to report.
    let early: http.IncomingMessage | undefined;
    const response = new Promise<http.IncomingMessage>((resolve, reject) => {
      req.once('response', (res: http.IncomingMessage) => resolve((early = res)));
      req.once('error', reject);
    });
    // Observed below or, when the body fails first, superseded by that failure.
    response.catch(() => undefined);
    let sent = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of chunks) {
        sent += chunk.byteLength;
        yield chunk;
      }
    }
    try {
      await pipeline(counted(), req);
    } catch (err) {
      if (early) await expectOk(early, `write ${path}`);
      throw err;
    }
    await expectOk(await response, `write ${path}`);
    return sent;
  }

  /**
   * Writes `path` beside the target and renames it into place: a body that fails or is cut off
   * midway leaves the target as it was, never half a file.
   */
  async replaceFile(
    path: string,
    user: string,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<number> {
    const slash = path.lastIndexOf('/');
    const partial = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.wrenn-${randomBytes(6).toString('hex')}.part`;
    const headers = userHeaders(user);
    try {
      const written = await this.upload(partial, user, chunks, signal);
      await this.filesystem.move({ source: partial, destination: path }, { headers, signal });
      return written;
    } catch (err) {
      // Not tied to the caller's signal: a cancelled upload still has its partial file removed. envd
      // may create it only after this (the upload was cut before envd opened the file), so once more
      // a little later.
      const remove = () =>
        this.filesystem.remove({ path: partial }, { headers, timeoutMs: 5000 }).catch(() => undefined);
      await remove();
      setTimeout(() => void remove(), LATE_PARTIAL_REMOVE_MS).unref();
      throw err;
    }
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
      req.on('timeout', () => req.destroy(new RequestTimeout(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(opts.body);
    });
  }
}

class RequestTimeout extends Error {}

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
