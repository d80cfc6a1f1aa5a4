import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { createLogger } from '@wrenn/core';
import { startServer, type RunningServer, type ServerConfig } from '@wrenn/server';

export interface ControlPlane {
  server: RunningServer;
  /** Stops the server and removes its data dir. */
  stop(): Promise<void>;
}

/**
 * The control plane in this process, in front of the agent at `agentUrl`, with a temporary data
 * dir (PGlite in it unless `database` says otherwise).
 */
export async function startControlPlane(
  agentUrl: string,
  opts: { database?: (dataDir: string) => ServerConfig['database']; uploadMaxBytes?: number } = {},
): Promise<ControlPlane> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'wrenn-server-'));
  const server = await startServer(
    {
      dataDir,
      listenHost: '127.0.0.1',
      listenPort: 0,
      database: opts.database?.(dataDir) ?? { kind: 'pglite', dir: path.join(dataDir, 'db') },
      agentUrl,
      logLevel: 'warn',
      uploadMaxBytes: opts.uploadMaxBytes,
      // The tests sign their users up themselves (production's default is invites only).
      openSignup: true,
    },
    createLogger({ name: 'wrenn-server', level: 'warn', pretty: false }),
  ).catch(async (err: unknown) => {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  return {
    server,
    async stop() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ApiResult {
  status: number;
  body: Record<string, unknown>;
}

/** A JSON request to the API (`key` → X-API-Key, `bearer` → Authorization); the status and body. */
export async function apiCall(
  baseUrl: string,
  method: string,
  url: string,
  opts: { body?: unknown; key?: string; bearer?: string } = {},
): Promise<ApiResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.key) headers['x-api-key'] = opts.key;
  if (opts.bearer) headers.authorization = `Bearer ${opts.bearer}`;
  const res = await fetch(baseUrl + url, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

/** Signs a new user up (a team comes with it) and returns an API key of that team. */
export async function teamApiKey(baseUrl: string, email: string): Promise<string> {
  const signup = await apiCall(baseUrl, 'POST', '/v1/auth/signup', {
    body: { email, password: 'long enough password' },
  });
  if (signup.status !== 201)
    throw new Error(`signup ${email}: ${signup.status} ${JSON.stringify(signup.body)}`);
  const { token, team } = signup.body as { token: string; team: { id: string } };
  const key = await apiCall(baseUrl, 'POST', `/v1/teams/${team.id}/api-keys`, {
    body: { name: 'e2e' },
    bearer: token,
  });
  return key.body.key as string;
}

export interface WsSession {
  stdout: string;
  stderr: string;
  pty: string;
  exit?: { exit_code: number; timed_out: boolean; status: string };
  error?: { code: string; message: string };
  closeCode?: number;
  /** The HTTP status when the server refused the upgrade. */
  rejectedWith?: number;
}

/**
 * Runs one streaming exec over the API's WebSocket: sends the messages in order (objects as JSON
 * text frames, Buffers as binary frames, 'close' closes the socket) once the command has started,
 * and collects everything.
 */
export function wsExec(
  httpUrl: string,
  key: string,
  messages: (object | Buffer | 'close')[],
): Promise<WsSession> {
  const session: WsSession = { stdout: '', stderr: '', pty: '' };
  const ws = new WebSocket(httpUrl.replace(/^http/, 'ws'), { headers: { 'x-api-key': key } });
  const [start, ...rest] = messages;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`WebSocket exec did not finish: ${JSON.stringify(session)}`));
    }, 30_000);
    const done = () => {
      clearTimeout(timer);
      resolve(session);
    };
    ws.on('unexpected-response', (_req, res) => {
      session.rejectedWith = res.statusCode;
      res.resume();
      done();
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on('open', () => ws.send(JSON.stringify(start)));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const msg = JSON.parse((data as Buffer).toString('utf8')) as {
        type: string;
        data?: string;
        pid?: number;
      };
      const text = () => Buffer.from(msg.data ?? '', 'base64').toString('utf8');
      switch (msg.type) {
        case 'started':
          for (const m of rest) {
            if (m === 'close') ws.close(1000);
            else ws.send(Buffer.isBuffer(m) ? m : JSON.stringify(m));
          }
          break;
        case 'stdout':
        case 'stderr':
        case 'pty':
          session[msg.type] += text();
          break;
        case 'exit':
          session.exit = msg as unknown as WsSession['exit'];
          break;
        case 'error':
          session.error = msg as unknown as WsSession['error'];
          break;
      }
    });
    ws.on('close', (code) => {
      session.closeCode = code;
      done();
    });
  });
}

/**
 * A raw upload that sends `bytes` zeros, chunked, or with a declared Content-Length that may be far
 * larger than what is sent (the server is expected to answer before reading it all).
 */
export function rawUpload(
  baseUrl: string,
  sandboxId: string,
  key: string,
  path: string,
  opts: { bytes: number; declaredLength?: number },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(`/v1/sandboxes/${sandboxId}/files?path=${encodeURIComponent(path)}`, baseUrl);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {
      'x-api-key': key,
      'content-type': 'application/octet-stream',
    };
    if (opts.declaredLength !== undefined) headers['content-length'] = opts.declaredLength;
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        req.destroy();
        resolve({
          status: res.statusCode ?? 0,
          body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
        });
      });
    });
    // The server may close while we still write: that is the answer, not a failure.
    req.on('error', (err) => (req.writableEnded ? undefined : reject(err)));
    const chunk = Buffer.alloc(64 * 1024);
    let sent = 0;
    const pump = () => {
      while (sent < opts.bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      if (opts.declaredLength === undefined) req.end();
    };
    pump();
  });
}
