import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { upgradeWebSocket } from '@hono/node-server';
import { OpenAPIHono } from '@hono/zod-openapi';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { App } from './app-types.js';
import { closeServer, serveApp } from './app.js';

describe('closeServer', () => {
  it('ends with a request under way and an open WebSocket (cut after the grace), and stops listening', async () => {
    const app = new OpenAPIHono() as unknown as App;
    app.get('/hang', () => new Promise<Response>(() => undefined));
    app.get(
      '/ws',
      upgradeWebSocket(() => ({})),
    );
    const server = await serveApp(app, '127.0.0.1', 0);
    const port = (server.address() as AddressInfo).port;

    const hanging = new Promise<string>((resolve) => {
      http
        .get({ host: '127.0.0.1', port, path: '/hang' }, () => resolve('answered'))
        .on('error', (err) => resolve(`cut: ${err.message}`));
    });
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const wsClosed = new Promise<number>((resolve) => ws.once('close', resolve));
    await new Promise((r) => setTimeout(r, 50)); // the request reaches the handler

    const started = Date.now();
    await closeServer(server, 300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await hanging).toMatch(/^cut: /);
    expect(await wsClosed).toBe(1006); // cut, not closed by the server's handler
    await expect(fetch(`http://127.0.0.1:${port}/hang`)).rejects.toThrow();
  });

  it('ends at once when nothing is open', async () => {
    const server = await serveApp(new OpenAPIHono() as unknown as App, '127.0.0.1', 0);
    // Waiting out this grace would time the test out.
    await closeServer(server, 600_000);
    expect(server.listening).toBe(false);
  });
});
