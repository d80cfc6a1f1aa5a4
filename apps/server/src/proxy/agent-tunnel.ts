import type http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { SandboxPool } from './target-cache.js';

/**
 * A byte stream to `port` inside sandbox `sandboxId` through its host's agent: an HTTP/2 CONNECT
 * request for `<sandboxId>:<port>` on the agent's mutual-TLS session. The agent answers 200 and
 * joins the stream to the port, or 404 when the sandbox does not run there. Resolves once the
 * agent said 200; rejects (code ECONNREFUSED, ETIMEDOUT or the agent's status) otherwise.
 */
export function openAgentTunnel(
  session: http2.ClientHttp2Session,
  sandboxId: string,
  port: number,
  timeoutMs: number,
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({
        [http2.constants.HTTP2_HEADER_METHOD]: http2.constants.HTTP2_METHOD_CONNECT,
        [http2.constants.HTTP2_HEADER_AUTHORITY]: `${sandboxId}:${port}`,
      });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const fail = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      stream.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const timer = setTimeout(
      () => fail(withCode(new Error('the agent did not open the tunnel in time'), 'ETIMEDOUT')),
      timeoutMs,
    );
    stream.once('error', (err) => fail(err as NodeJS.ErrnoException));
    stream.once('close', () => fail(withCode(new Error('the agent closed the tunnel'), 'ECONNRESET')));
    stream.once('response', (headers) => {
      const status = Number(headers[http2.constants.HTTP2_HEADER_STATUS]);
      if (status !== 200) {
        fail(
          withCode(
            new Error(`the agent answered ${status} to the tunnel`),
            status === 404 ? 'ENOTFOUND' : 'ECONNREFUSED',
          ),
        );
        return;
      }
      clearTimeout(timer);
      stream.removeAllListeners('error');
      stream.removeAllListeners('close');
      resolve(asSocketLike(stream));
    });
  });
}

/**
 * The kept-alive connections to one sandbox incarnation on a registered host: each "connection"
 * is a CONNECT stream on the host's one HTTP/2 session, kept for the next request like a socket.
 */
export class TunnelPool extends SandboxPool {
  constructor(
    host: string,
    override readonly session: http2.ClientHttp2Session,
    private readonly sandboxId: string,
    private readonly connectTimeoutMs: number,
  ) {
    super(host);
  }

  // Node's Agent accepts a connection handed to the callback later (documented for createConnection).
  override createConnection(
    options: http.ClientRequestArgs,
    done: (err: Error | null, stream?: Duplex) => void,
  ): undefined {
    openAgentTunnel(this.session, this.sandboxId, Number(options.port), this.connectTimeoutMs).then(
      (stream) => done(null, stream),
      (err: Error) => done(err),
    );
    return undefined;
  }

  // A stream has no keep-alive or ref of its own to set: the session is the connection.
  override keepSocketAlive(): boolean {
    return !this.isRetired;
  }
  // reuseSocket stays Node's: it removes the 'error' listener a socket gets while it waits in the
  // free list (an empty override let one pile up per request on a reused stream).
}

/** What Node's HTTP client and Agent call on a socket, as no-ops on a stream (HTTP/2 does it per session). */
function asSocketLike(stream: http2.ClientHttp2Stream): Duplex {
  const noop = () => stream;
  return Object.assign(stream, { setNoDelay: noop, setKeepAlive: noop, ref: noop, unref: noop });
}

function withCode(err: Error, code: string): NodeJS.ErrnoException {
  return Object.assign(err, { code });
}
