import http2, { type Http2SecureServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { formatHostPort, type Logger } from '@wrenn/core';
import {
  agentServerTlsOptions,
  CHANNEL_SESSION_WINDOW,
  peerIsControlPlane,
  type TlsMaterial,
} from '@wrenn/pki';
import { handleTunnel, type TunnelTargets } from './sandbox-tunnel.js';

type Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

export interface AgentServer {
  /** http://host:port (unregistered, h2c) or https://host:port (mutual TLS). */
  url: string;
  /** Puts a renewed certificate in place for the connections that come next. */
  setTlsMaterial(material: TlsMaterial): void;
  close(): Promise<void>;
}

/**
 * The agent's one listener: Connect RPC (`handler`) and the sandbox tunnel (HTTP/2 CONNECT). With
 * TLS material, mutual TLS: a client certificate from the cluster's CA is required at the handshake,
 * and a connection whose certificate is not the control plane's (another host's, say) is dropped
 * before it carries a request. Without, h2c, and only on loopback (the caller checks).
 */
export async function listenAgentServer(opts: {
  host: string;
  port: number;
  handler: Handler;
  tunnels: TunnelTargets;
  tls: TlsMaterial | undefined;
  logger: Logger;
}): Promise<AgentServer> {
  const { tls, logger } = opts;
  const secure: Http2SecureServer | undefined =
    tls && http2.createSecureServer(agentServerTlsOptions(tls), opts.handler);
  const server: Http2Server | Http2SecureServer = secure ?? http2.createServer(opts.handler);
  if (secure) {
    // Ahead of http2's own listener: a refused peer never gets an HTTP/2 session.
    secure.prependListener('secureConnection', (socket: TLSSocket) => {
      if (peerIsControlPlane(socket)) return;
      logger.warn(
        { remote: formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0) },
        'refused a TLS peer that is not the control plane',
      );
      socket.destroy();
    });
  }
  server.on('connect', (req: http2.Http2ServerRequest) => handleTunnel(req, opts.tunnels, logger));
  server.on('session', (session: http2.ServerHttp2Session) =>
    session.setLocalWindowSize(CHANNEL_SESSION_WINDOW),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `${tls ? 'https' : 'http'}://${formatHostPort(opts.host, port)}`;
  return {
    url,
    setTlsMaterial(material) {
      if (!secure) throw new Error('the agent serves h2c: no certificate to renew');
      secure.setSecureContext(agentServerTlsOptions(material));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Streams in flight would hold close() open forever.
        setTimeout(resolve, 2000).unref();
      }),
  };
}
