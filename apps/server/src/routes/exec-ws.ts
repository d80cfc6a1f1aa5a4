import { upgradeWebSocket } from '@hono/node-server';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed } from '../http/auth.js';
import { apiKey, errors, SandboxIdParam } from '../http/schemas.js';
import { ownedSandbox } from '../services/sandbox-access.js';
import { ExecSession } from './exec-session.js';

/**
 * Streaming exec over a WebSocket: the first message starts the command; stdin, end of input and
 * terminal resizes follow; output and the exit come back as they happen. Closing the socket kills
 * the command.
 */
export function execWebSocketRoutes(app: App, deps: ServerDeps): void {
  const { db, logger } = deps;

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

  // One handler (not middleware), so the route counts as served where routes are listed.
  app.get('/v1/sandboxes/:id/exec/ws', async (c) => {
    const { id } = SandboxIdParam.parse(c.req.param());
    const row = await ownedSandbox(db, authed(c, 'teamId'), id);
    // The agent of the sandbox's host, found before the upgrade so a failure is still an HTTP answer.
    const agent = await deps.hosts.agent(row.host_id);
    const upgrade = upgradeWebSocket(() => {
      const session = new ExecSession(agent, logger, row.id);
      return {
        onMessage: (event, ws) => session.message(ws, (event as { data: unknown }).data),
        onClose: () => session.close(),
        onError: () => session.close(),
      };
    });
    const upgraded = await upgrade(c, () => Promise.resolve());
    return (
      upgraded ?? c.json({ code: 'upgrade_required', message: 'this endpoint speaks WebSocket only' }, 426)
    );
  });
}
