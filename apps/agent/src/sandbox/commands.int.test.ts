import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { process as processpb } from '@wrenn/contracts';
import { runCommand, type CommandEvent, type CommandSpec } from './commands.js';
import { EnvdClient } from './envd-client.js';

// runCommand against a real HTTP server speaking envd's process service (only Start), to see what
// happens on the wire.
let server: http.Server;
let connections = 0;

beforeAll(async () => {
  let nextPid = 100;
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(processpb.Process, {
        // eslint-disable-next-line @typescript-eslint/require-await -- the events are ready at once
        async *start(req) {
          const pid = nextPid++;
          yield { event: { event: { case: 'start', value: { pid } } } };
          yield {
            event: {
              event: {
                case: 'data',
                value: { output: { case: 'stdout', value: Buffer.from(req.process!.args.join(' ')) } },
              },
            },
          };
          yield {
            event: { event: { case: 'end', value: { exitCode: 3, exited: true, status: 'exit status 3' } } },
          };
        },
      }),
  });
  server = http.createServer(handler);
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const spec = (cmd: string): CommandSpec => ({
  cmd,
  args: [],
  env: {},
  cwd: '',
  user: '',
  timeoutMs: 10_000,
  stdin: new Uint8Array(),
  interactive: false,
});

async function collect(events: AsyncIterable<CommandEvent>): Promise<CommandEvent[]> {
  const all: CommandEvent[] = [];
  for await (const ev of events) all.push(ev);
  return all;
}

describe('runCommand', () => {
  it('yields start, output and exit in order, and reuses one connection for many commands', async () => {
    const envd = new EnvdClient('127.0.0.1', (server.address() as AddressInfo).port, 'token');
    connections = 0;
    for (let i = 0; i < 5; i++) {
      const events = await collect(runCommand(envd, spec(`echo ${i}`)));
      expect(events.map((e) => e.type)).toEqual(['started', 'stdout', 'exited']);
      expect(Buffer.from((events[1] as { data: Uint8Array }).data).toString()).toBe(`-c echo ${i}`);
      expect(events[2]).toMatchObject({ exitCode: 3, timedOut: false, status: 'exit status 3' });
    }
    // Cancelling each stream after its exit event would cost a new TCP connection per command.
    expect(connections).toBe(1);
    envd.close();
  });
});
