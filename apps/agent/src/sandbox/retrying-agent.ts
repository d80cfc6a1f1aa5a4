import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';

// Failures of connection setup: no byte of the request left, so trying again is always safe.
const RETRYABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH']);
const BACKOFF_MS = [50, 150, 400];
const CONNECT_TIMEOUT_MS = 5000;

/**
 * An HTTP agent whose TCP connects are retried on setup failures. The cause seen on our hosts (a
 * routing loop in the slot, docs/gvisor.md) is fixed; a retry still costs nothing when no byte left.
 */
export class RetryingAgent extends http.Agent {
  constructor(
    options: http.AgentOptions,
    private readonly onRetry: (err: NodeJS.ErrnoException, attempt: number) => void,
  ) {
    super(options);
  }

  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    let attempt = 0;
    const connect = () => {
      const socket = net.connect(options as net.NetConnectOpts);
      // A SYN into a sandbox that is gone is never answered: without this the kernel retries for ~2 min.
      socket.setTimeout(CONNECT_TIMEOUT_MS, () => {
        const err: NodeJS.ErrnoException = new Error(`connect to ${String(options.host)} timed out`);
        err.code = 'ETIMEDOUT';
        socket.destroy(err);
      });
      const onError = (err: NodeJS.ErrnoException) => {
        socket.destroy();
        const delay = BACKOFF_MS[attempt];
        if (delay !== undefined && RETRYABLE.has(err.code ?? '')) {
          attempt++;
          this.onRetry(err, attempt);
          setTimeout(connect, delay);
        } else {
          callback?.(err, socket);
        }
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.setTimeout(0);
        socket.off('error', onError);
        callback?.(null, socket);
      });
    };
    connect();
    return undefined;
  }
}
