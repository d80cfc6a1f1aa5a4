import http2 from 'node:http2';
import { createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { Code, ConnectError, currentLogContext, REQUEST_ID_HEADER, type Logger } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import { CHANNEL_SESSION_WINDOW, controlPlaneClientTlsOptions } from '@wrenn/pki';
import type { Db } from '../../db/database.js';
import type { AgentClient } from '../../http/app-types.js';
import type { PlacementConfig } from '../../config.js';
import type { HostCredentials } from './host-credentials.js';
import { placeSandbox, type PlacementHints, type SandboxNeed } from './placement.js';

/** The agent of each host, and where new sandboxes go: what every sandbox operation needs. */
export interface Hosts {
  /** The agent of host `hostId`; null: the server's static host (rows from before the fleet). */
  agent(hostId: string | null): Promise<AgentClient>;
  /** The host for a new sandbox of `teamId` (placement; 503 when none fits). */
  place(teamId: string, need: SandboxNeed, hints?: PlacementHints): Promise<string | null>;
  /** How the proxy reaches sandbox ports on host `hostId`. */
  route(hostId: string | null): Promise<HostRoute>;
}

/** The agent of the host a sandbox is on (by its row). */
export async function agentOfSandbox(
  deps: { db: Db; hosts: Hosts },
  sandboxId: string,
): Promise<AgentClient> {
  const row = await deps.db
    .selectFrom('sandboxes')
    .select('host_id')
    .where('id', '=', sandboxId)
    .executeTakeFirst();
  return deps.hosts.agent(row?.host_id ?? null);
}

/**
 * An agent that knows the platform's images: the static host's, else any online platform host's
 * (every host is set up with the same images).
 */
export async function platformAgent(deps: { db: Db; hosts: Hosts }): Promise<AgentClient> {
  const host = await deps.db
    .selectFrom('hosts')
    .select('id')
    .where('kind', '=', 'platform')
    .where('status', '=', 'online')
    .orderBy('is_static', 'desc')
    .orderBy('created_at')
    .limit(1)
    .executeTakeFirst();
  return deps.hosts.agent(host?.id ?? null);
}

/** How the proxy reaches sandbox ports on a host. */
export type HostRoute =
  | { kind: 'direct' } // the static host, or `wrenn up`'s own: slot addresses are reachable from here
  | { kind: 'tunnel'; session: http2.ClientHttp2Session }; // HTTP/2 CONNECT through the agent

/** One agent for every host (sandboxes placed on none): tests hand a fake agent to code that takes `Hosts`. */
export function singleAgent(agent: AgentClient): Hosts {
  return {
    agent: () => Promise.resolve(agent),
    place: () => Promise.resolve(null),
    route: () => Promise.resolve({ kind: 'direct' }),
  };
}

interface Connection {
  address: string;
  isStatic: boolean;
  client: AgentClient;
  sessions: Http2SessionManager;
  /** The tunnel session (registered hosts), opened on first use and reused. */
  tunnel?: http2.ClientHttp2Session;
  /** The control-plane certificate it was made with; a newer one replaces the connection. */
  issuedAt?: number;
}

/**
 * One Connect client (one HTTP/2 session) per host, and for registered hosts one more HTTP/2
 * session for the proxy's CONNECT tunnels; made on first use, dropped when the host is deleted,
 * registers, or this server's client certificate is reissued. The static host is plain h2c at
 * its URL; registered hosts are mutual TLS at `https://<address>`, and the agent's certificate
 * must name the host that was meant (its address is only where to dial).
 */
export class HostDirectory implements Hosts {
  private readonly connections = new Map<string, Connection>();

  constructor(
    private readonly db: Db,
    private readonly credentials: HostCredentials,
    private readonly logger: Logger,
    private readonly placement: PlacementConfig,
    /** The static host's id (WRENN_AGENT_URL), when there is one. */
    readonly staticHostId?: string,
  ) {}

  /**
   * The registered host whose agent runs in this process (`wrenn up`): its slot addresses are
   * routable from here, so the proxy goes to them directly, as for the static host, not through a
   * tunnel. Only this process knows it; another replica tunnels.
   */
  localHostId?: string;

  place(teamId: string, need: SandboxNeed, hints?: PlacementHints): Promise<string> {
    return placeSandbox(this.db, this.placement, teamId, need, hints);
  }

  async agent(hostId: string | null): Promise<AgentClient> {
    return (await this.connection(hostId)).client;
  }

  /** How the proxy reaches sandbox ports on `hostId`. */
  async route(hostId: string | null): Promise<HostRoute> {
    const id = this.idOf(hostId);
    const conn = await this.connection(id);
    if (conn.isStatic || id === this.localHostId) return { kind: 'direct' };
    if (!conn.tunnel || conn.tunnel.closed || conn.tunnel.destroyed) {
      const material = await this.credentials.controlPlaneMaterial();
      const session = http2.connect(`https://${conn.address}`, controlPlaneClientTlsOptions(material, id));
      session.on('error', (err) => this.logger.debug({ hostId: id, err }, 'tunnel session failed'));
      session.on('close', () => {
        if (conn.tunnel === session) conn.tunnel = undefined;
      });
      // Idle sessions must not hold the process open.
      session.unref();
      conn.tunnel = session;
    }
    return { kind: 'tunnel', session: conn.tunnel };
  }

  /** Forget a host's connections (deleted, registered anew, its address changed). */
  drop(hostId: string): void {
    const conn = this.connections.get(hostId);
    if (!conn) return;
    this.connections.delete(hostId);
    conn.sessions.abort();
    conn.tunnel?.close();
  }

  close(): void {
    for (const id of [...this.connections.keys()]) this.drop(id);
  }

  private idOf(hostId: string | null): string {
    const id = hostId ?? this.staticHostId;
    if (!id)
      throw new ConnectError('this control plane has no static host (WRENN_AGENT_URL)', Code.Unavailable);
    return id;
  }

  private async connection(hostId: string | null): Promise<Connection> {
    const id = this.idOf(hostId);
    const known = this.connections.get(id);
    if (known?.isStatic) return known;
    if (known) {
      // Reissued daily: a connection made with yesterday's certificate is replaced.
      await this.credentials.controlPlaneMaterial();
      if (known.issuedAt === this.credentials.controlPlaneIssuedAt) return known;
    }
    const host = await this.db
      .selectFrom('hosts')
      .select(['address', 'is_static', 'status'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!host || host.status === 'deleted')
      throw new ConnectError(`host ${id} was deleted`, Code.Unavailable);
    if (!host.address) throw new ConnectError(`host ${id} has not registered yet`, Code.Unavailable);
    if (known) this.drop(id);
    const conn = host.is_static
      ? this.staticConnection(host.address)
      : await this.tlsConnection(id, host.address);
    this.connections.set(id, conn);
    return conn;
  }

  private staticConnection(url: string): Connection {
    const sessions = new Http2SessionManager(url);
    const transport = agentTransport(url, sessions);
    return {
      address: url,
      isStatic: true,
      sessions,
      client: createClient(hostagent.HostAgentService, transport),
    };
  }

  private async tlsConnection(hostId: string, address: string): Promise<Connection> {
    const material = await this.credentials.controlPlaneMaterial();
    const url = `https://${address}`;
    // Pings on an idle session: a host cut off mid-session fails its calls within seconds, instead
    // of leaving them waiting on a connection nobody answers.
    const sessions = new WideWindowSessions(
      url,
      { pingIntervalMs: 10_000, pingTimeoutMs: 5_000 },
      controlPlaneClientTlsOptions(material, hostId),
    );
    const transport = agentTransport(url, sessions);
    return {
      address,
      isStatic: false,
      sessions,
      client: createClient(hostagent.HostAgentService, transport),
      issuedAt: this.credentials.controlPlaneIssuedAt,
    };
  }
}

/**
 * Calls to an agent offer no compression: the agent would gzip every answer over 1 KiB on its event
 * loop, and what flows (checkpoints, disk images, command output) rarely shrinks; an artifact stream
 * ran at ~9 MiB/s gzipped (bench:move) where the disk does ~180 MiB/s.
 */
function agentTransport(baseUrl: string, sessionManager: Http2SessionManager) {
  return createConnectTransport({
    baseUrl,
    httpVersion: '2',
    sessionManager,
    acceptCompression: [],
    interceptors: [forwardRequestId],
  });
}

/**
 * Every call made on behalf of an API request carries its `X-Request-Id` (from the log context the
 * server runs the request in), and the agent logs the call's lines with it.
 */
const forwardRequestId: Interceptor = (next) => (req) => {
  const requestId = currentLogContext()?.requestId;
  if (requestId && !req.header.has(REQUEST_ID_HEADER)) req.header.set(REQUEST_ID_HEADER, requestId);
  return next(req);
};

/**
 * Sessions to an agent with the channel's wide session window (see `CHANNEL_SESSION_WINDOW`): Node
 * only lets a session's own window grow once it is connected, and the manager keeps its sessions to
 * itself, so each is widened on the first request it carries.
 */
class WideWindowSessions extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(
    ...args: Parameters<Http2SessionManager['request']>
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const { session } = stream;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(CHANNEL_SESSION_WINDOW);
    }
    return stream;
  }
}
