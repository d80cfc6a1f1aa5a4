import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { filesystem as fspb, process as processpb } from '@wrenn/contracts';
import { silentLogger } from '@wrenn/core';
import { testForkServerBinary } from './fork-server-binary.js';
import { createEnvdServer, type EnvdServer, type EnvdServerOptions } from '../server.js';

export interface EnvdFixture {
  server: EnvdServer;
  baseUrl: string;
  port: number;
  /** A scratch directory removed by close(). */
  dir: string;
  process: Client<typeof processpb.Process>;
  filesystem: Client<typeof fspb.Filesystem>;
  /** Clients with extra headers (Basic auth user, access token …). */
  clients(headers: Record<string, string>): {
    process: Client<typeof processpb.Process>;
    filesystem: Client<typeof fspb.Filesystem>;
  };
  close(): Promise<void>;
}

/**
 * A real envd on 127.0.0.1 and a random port, with Connect clients speaking JSON over HTTP/1.1, as
 * the E2B JS SDK does.
 */
export async function startEnvd(opts: Partial<EnvdServerOptions> = {}): Promise<EnvdFixture> {
  const server = await createEnvdServer({
    logger: silentLogger(),
    defaultUser: 'root',
    forkServerPaths: [await testForkServerBinary()],
    ...opts,
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const baseUrl = `http://127.0.0.1:${port}`;
  const dir = await mkdtemp(join(tmpdir(), 'envd-test-'));

  function clients(headers: Record<string, string>) {
    const addHeaders: Interceptor = (next) => (req) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    };
    const transport = createConnectTransport({
      baseUrl,
      httpVersion: '1.1',
      useBinaryFormat: false,
      interceptors: [addHeaders],
    });
    return {
      process: createClient(processpb.Process, transport),
      filesystem: createClient(fspb.Filesystem, transport),
    };
  }
  const plain = clients({});

  return {
    server,
    baseUrl,
    port,
    dir,
    ...plain,
    clients,
    async close() {
      await server.close({ killProcesses: true });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Basic auth header that selects `user` (empty password), as the SDKs send it. */
export function basicAuth(user: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}` };
}
