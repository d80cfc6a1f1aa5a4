import { upgradeWebSocket } from '@hono/node-server';
import type { WSContext } from 'hono/ws';
import { z } from '@hono/zod-openapi';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed } from '../http/auth.js';
import { ApiError, invalidInput, toApiError } from '../http/errors.js';
import { apiKey, ENV_VARS, errors, LINUX_USER, SandboxIdParam } from '../http/schemas.js';
import { ownedSandbox } from '../services/sandbox-access.js';

const PtySize = z.strictObject({
  cols: z.number().int().min(1).max(1000),
  rows: z.number().int().min(1).max(1000),
});

/** The client's messages: text frames of JSON; a binary frame is stdin as it is. */
const ClientMessage = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('start'),
    cmd: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: ENV_VARS.default({}),
    cwd: z.string().startsWith('/').optional(),
    user: LINUX_USER.optional(),
    timeout_ms: z.number().int().min(1).max(86_400_000).default(3_600_000),
    pty: PtySize.optional(),
  }),
  z.strictObject({ type: z.literal('stdin'), data: z.string() }),
  z.strictObject({ type: z.literal('eof') }),
  z.strictObject({ type: z.literal('resize'), cols: z.number().int(), rows: z.number().int() }),
]);
type Start = Extract<z.infer<typeof ClientMessage>, { type: 'start' }>;

/**
 * Streaming exec over a WebSocket: the first message starts the command; stdin, end of input and
 * terminal resizes follow; output and the exit come back as they happen. Closing the socket kills
 * the command.
 */
export function execWebSocketRoutes(app: App, deps: ServerDeps): void {
  const { db, agent, logger } = deps;

  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/sandboxes/{id}/exec/ws',
    tags: ['sandboxes'],
    summary: 'Run a command with live input and output over a WebSocket',
    description: [
      'Client → server, text frames of JSON: first `{"type":"start","cmd","args"?,"env"?,"cwd"?,"user"?,"timeout_ms"?,"pty"?:{"cols","rows"}}`,',
      'then any of `{"type":"stdin","data":"text"}` (or a binary frame: raw bytes), `{"type":"eof"}`, `{"type":"resize","cols","rows"}`.',
      'Server → client: `{"type":"started","pid"}`, `{"type":"stdout"|"stderr"|"pty","data":"<base64>"}`,',
      '`{"type":"exit","exit_code","timed_out","status"}` (then close 1000), or `{"type":"error","code","message"}` (then close 1008/1011).',
      'Closing the socket kills the command. Authenticated with X-API-Key on the upgrade request.',
    ].join(' '),
    security: apiKey,
    request: { params: SandboxIdParam },
    responses: {
      101: { description: 'Switching to the WebSocket protocol' },
      ...errors,
      426: { description: 'Not a WebSocket upgrade', content: errors[400].content },
    },
  });

  const upgrade = upgradeWebSocket((c) => {
    const sandboxId = c.req.param('id')!;
    const abort = new AbortController();
    let started: Promise<number> | undefined;
    let pty = false;
    // Input is sent in order, each after the previous and after the command has a pid.
    let input: Promise<void> = Promise.resolve();

    const send = (ws: WSContext, msg: object) => {
      if (ws.readyState === 1) ws.send(JSON.stringify(msg));
    };
    const fail = (ws: WSContext, err: unknown) => {
      const known = toApiError(err);
      if (!known) logger.error({ err, sandboxId }, 'exec over WebSocket failed');
      send(ws, {
        type: 'error',
        code: known?.code ?? 'internal',
        message: known?.message ?? 'internal error; see the server log',
      });
      ws.close(known && known.status < 500 ? 1008 : 1011, known?.code ?? 'internal');
      abort.abort();
    };
    const queueInput = (ws: WSContext, fn: (pid: number) => Promise<unknown>) => {
      if (!started)
        return fail(ws, new ApiError(400, 'invalid_argument', 'type: the first message must be "start"'));
      const pidReady = started;
      input = input.then(async () => {
        if (abort.signal.aborted) return;
        await fn(await pidReady);
      });
      input.catch((err: unknown) => fail(ws, err));
    };

    async function run(ws: WSContext, start: Start) {
      let resolvePid!: (pid: number) => void;
      started = new Promise((r) => (resolvePid = r));
      pty = !!start.pty;
      const events = agent.execStream(
        {
          sandboxId,
          command: {
            cmd: start.cmd,
            args: start.args,
            env: start.env,
            cwd: start.cwd ?? '',
            user: start.user ?? '',
            timeoutMs: start.timeout_ms,
            interactive: true,
            pty: start.pty,
          },
        },
        { signal: abort.signal },
      );
      for await (const res of events) {
        const event = res.event;
        switch (event.case) {
          case 'started':
            resolvePid(event.value.pid);
            send(ws, { type: 'started', pid: event.value.pid });
            break;
          case 'stdout':
          case 'stderr':
          case 'pty':
            send(ws, { type: event.case, data: Buffer.from(event.value).toString('base64') });
            break;
          case 'exited':
            send(ws, {
              type: 'exit',
              exit_code: event.value.exitCode,
              timed_out: event.value.timedOut,
              status: event.value.status,
            });
            ws.close(1000, 'exited');
            return;
          case undefined:
            break;
        }
      }
    }

    return {
      onMessage(event, ws) {
        const { data: frame } = event as { data: unknown };
        if (typeof frame !== 'string') {
          const data = new Uint8Array(frame as ArrayBuffer);
          queueInput(ws, (pid) => agent.sendExecInput({ sandboxId, pid, data }, { signal: abort.signal }));
          return;
        }
        let parsed: z.infer<typeof ClientMessage>;
        try {
          parsed = ClientMessage.parse(JSON.parse(frame));
        } catch (err) {
          return fail(
            ws,
            err instanceof z.ZodError
              ? invalidInput(err, 'message')
              : new ApiError(400, 'invalid_argument', 'message: malformed JSON'),
          );
        }
        switch (parsed.type) {
          case 'start':
            if (started)
              return fail(ws, new ApiError(400, 'invalid_argument', 'type: the command was already started'));
            run(ws, parsed).catch((err: unknown) => {
              if (!abort.signal.aborted) fail(ws, err);
            });
            return;
          case 'stdin':
            return queueInput(ws, (pid) =>
              agent.sendExecInput(
                { sandboxId, pid, data: Buffer.from(parsed.data) },
                { signal: abort.signal },
              ),
            );
          case 'eof':
            return queueInput(ws, (pid) =>
              pty
                ? agent.sendExecInput({ sandboxId, pid, data: Buffer.from([4]) }, { signal: abort.signal })
                : agent.sendExecInput({ sandboxId, pid, close: true }, { signal: abort.signal }),
            );
          case 'resize':
            return queueInput(ws, (pid) =>
              agent.resizeExecPty(
                { sandboxId, pid, size: { cols: parsed.cols, rows: parsed.rows } },
                { signal: abort.signal },
              ),
            );
        }
      },
      onClose() {
        // The agent kills the command when its stream is cancelled.
        abort.abort();
      },
      onError() {
        abort.abort();
      },
    };
  });

  // One handler (not middleware), so the route counts as served where routes are listed.
  app.get('/v1/sandboxes/:id/exec/ws', async (c) => {
    const { id } = SandboxIdParam.parse(c.req.param());
    await ownedSandbox(db, authed(c, 'teamId'), id);
    const upgraded = await upgrade(c, () => Promise.resolve());
    return (
      upgraded ?? c.json({ code: 'upgrade_required', message: 'this endpoint speaks WebSocket only' }, 426)
    );
  });
}
