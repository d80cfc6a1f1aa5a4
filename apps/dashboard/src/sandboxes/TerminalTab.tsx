import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'react';
import { getSession } from '../api/session.js';

type ServerMessage =
  | { type: 'started'; pid: number }
  | { type: 'stdout' | 'stderr' | 'pty'; data: string }
  | { type: 'exit'; exit_code: number }
  | { type: 'error'; code: string; message: string };

/** A shell that prefers bash (a login shell, so the template's profile applies). */
const SHELL = ['-c', 'if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi'];

const decode = (base64: string) => Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));

/**
 * A real terminal in the sandbox: a PTY over the exec WebSocket (the session in its subprotocols),
 * resized with the page. Loaded only when opened: xterm.js is most of its weight.
 */
export default function TerminalTab({ sandboxId }: { sandboxId: string }) {
  const container = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<'connecting' | 'open' | 'ended'>('connecting');
  const [problem, setProblem] = useState<string>();

  useEffect(() => {
    const session = getSession();
    const term = new Terminal({
      cursorBlink: true,
      fontSize: 13,
      fontFamily: 'ui-monospace, Menlo, monospace',
      screenReaderMode: true,
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(container.current!);
    fit.fit();
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/sandboxes/${sandboxId}/exec/ws`, [
      'wrenn',
      `bearer.${session?.token ?? ''}`,
      `team.${session?.teamId ?? ''}`,
    ]);
    const send = (message: object) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
    };
    ws.onopen = () =>
      send({
        type: 'start',
        cmd: '/bin/sh',
        args: SHELL,
        env: { TERM: 'xterm-256color' },
        pty: { cols: term.cols, rows: term.rows },
      });
    ws.onmessage = (event: MessageEvent<string>) => {
      const message = JSON.parse(event.data) as ServerMessage;
      switch (message.type) {
        case 'started':
          setState('open');
          term.focus();
          return;
        case 'pty':
        case 'stdout':
        case 'stderr':
          term.write(decode(message.data));
          return;
        case 'exit':
          term.write(`\r\n[the shell exited with ${message.exit_code}]\r\n`);
          setState('ended');
          return;
        case 'error':
          setProblem(`${message.message} (${message.code})`);
          return;
      }
    };
    ws.onclose = () => setState('ended');
    ws.onerror = () => setProblem('The connection to the sandbox failed.');
    const input = term.onData((data) => send({ type: 'stdin', data }));
    const resized = term.onResize(({ cols, rows }) => send({ type: 'resize', cols, rows }));
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(container.current!);
    return () => {
      observer.disconnect();
      input.dispose();
      resized.dispose();
      ws.close();
      term.dispose();
    };
  }, [sandboxId]);

  return (
    <section aria-label="Terminal" className="terminal-tab">
      <p className="muted" role="status">
        {state === 'connecting' ? 'Connecting…' : state === 'open' ? 'Connected' : 'Disconnected'}
      </p>
      {problem && (
        <p className="form-error" role="alert">
          {problem}
        </p>
      )}
      <div ref={container} className="terminal" data-testid="terminal" />
    </section>
  );
}
