import { z } from '@hono/zod-openapi';
import type { WSContext } from 'hono/ws';
import type { Logger } from '@wrenn/core';
import type { AgentClient } from '../http/app-types.js';
import { ApiError, invalidInput, toApiError } from '../http/errors.js';
import { ENV_VARS, LINUX_USER } from '../http/schemas.js';

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
type Message = z.infer<typeof ClientMessage>;
type Start = Extract<Message, { type: 'start' }>;

/**
 * One streaming exec over one WebSocket: the first message starts the command; stdin, end of
 * input and terminal resizes follow, each sent after the one before and after the command has a
 * pid; output and the exit go back as they happen. Closing the socket (`close`) cancels the
 * agent's stream, which kills the command.
 */
export class ExecSession {
  private readonly abort = new AbortController();
  private started: Promise<number> | undefined;
  private pty = false;
  private input: Promise<void> = Promise.resolve();

  constructor(
    private readonly agent: AgentClient,
    private readonly logger: Logger,
    private readonly sandboxId: string,
  ) {}

  /** A frame from the client. */
  message(ws: WSContext, frame: unknown): void {
    const { agent, sandboxId } = this;
    const signal = this.abort.signal;
    if (typeof frame !== 'string') {
      const data = new Uint8Array(frame as ArrayBuffer);
      return this.queueInput(ws, (pid) => agent.sendExecInput({ sandboxId, pid, data }, { signal }));
    }
    let parsed: Message;
    try {
      parsed = ClientMessage.parse(JSON.parse(frame));
    } catch (err) {
      return this.fail(
        ws,
        err instanceof z.ZodError
          ? invalidInput(err, 'message')
          : new ApiError(400, 'invalid_argument', 'message: malformed JSON'),
      );
    }
    switch (parsed.type) {
      case 'start':
        if (this.started)
          return this.fail(
            ws,
            new ApiError(400, 'invalid_argument', 'type: the command was already started'),
          );
        this.run(ws, parsed).catch((err: unknown) => {
          if (!signal.aborted) this.fail(ws, err);
        });
        return;
      case 'stdin':
        return this.queueInput(ws, (pid) =>
          agent.sendExecInput({ sandboxId, pid, data: Buffer.from(parsed.data) }, { signal }),
        );
      case 'eof':
        return this.queueInput(ws, (pid) =>
          this.pty
            ? agent.sendExecInput({ sandboxId, pid, data: Buffer.from([4]) }, { signal })
            : agent.sendExecInput({ sandboxId, pid, close: true }, { signal }),
        );
      case 'resize':
        return this.queueInput(ws, (pid) =>
          agent.resizeExecPty({ sandboxId, pid, size: { cols: parsed.cols, rows: parsed.rows } }, { signal }),
        );
    }
  }

  /** The socket closed or failed: the agent kills the command when its stream is cancelled. */
  close(): void {
    this.abort.abort();
  }

  private async run(ws: WSContext, start: Start): Promise<void> {
    let resolvePid!: (pid: number) => void;
    this.started = new Promise((r) => (resolvePid = r));
    this.pty = !!start.pty;
    const events = this.agent.execStream(
      {
        sandboxId: this.sandboxId,
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
      { signal: this.abort.signal },
    );
    for await (const { event } of events) {
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

  private queueInput(ws: WSContext, fn: (pid: number) => Promise<unknown>): void {
    if (!this.started)
      return this.fail(ws, new ApiError(400, 'invalid_argument', 'type: the first message must be "start"'));
    const pidReady = this.started;
    this.input = this.input.then(async () => {
      if (this.abort.signal.aborted) return;
      await fn(await pidReady);
    });
    this.input.catch((err: unknown) => this.fail(ws, err));
  }

  private fail(ws: WSContext, err: unknown): void {
    const known = toApiError(err);
    if (!known) this.logger.error({ err, sandboxId: this.sandboxId }, 'exec over WebSocket failed');
    send(ws, {
      type: 'error',
      code: known?.code ?? 'internal',
      message: known?.message ?? 'internal error; see the server log',
    });
    ws.close(known && known.status < 500 ? 1008 : 1011, known?.code ?? 'internal');
    this.abort.abort();
  }
}

function send(ws: WSContext, msg: object): void {
  if (ws.readyState === 1) ws.send(JSON.stringify(msg));
}
