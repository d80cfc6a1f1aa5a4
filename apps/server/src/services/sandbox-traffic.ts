import { hostagent } from '@wrenn/contracts';
import { parseHostPort, type Logger } from '@wrenn/core';
import type { Db } from '../db/database.js';
import type { ResolveResult } from '../proxy/sandbox-proxy.js';
import { agentOfSandbox, type HostRoute, type Hosts } from './fleet/host-agents.js';
import { resumeSandbox } from './sandbox-lifecycle.js';

export type TrafficTarget = ResolveResult;

/**
 * Where traffic for a sandbox goes: while it runs, its address when its host is the static one
 * (slot addresses are reachable from here), else a tunnel through its host's agent; a paused
 * sandbox created with auto-resume is resumed first (concurrent requests share one resume).
 * Anything else is gone (E2B answers 502 then, and its SDK reads that as "not running").
 */
export function sandboxTraffic(deps: {
  db: Db;
  hosts: Hosts;
  logger: Logger;
  sandboxReleased?: (sandboxId: string) => void;
  /** A private sandbox's traffic token (services/network-policy.ts). */
  trafficToken?: (sandboxId: string) => string;
}) {
  const { db, hosts, logger } = deps;
  const resuming = new Map<string, Promise<TrafficTarget>>();

  async function resolve(sandboxId: string): Promise<TrafficTarget> {
    const row = await db
      .selectFrom('sandboxes')
      .select(['host_id', 'status', 'auto_resume', 'allow_public_traffic'])
      .where('id', '=', sandboxId)
      .executeTakeFirst();
    const hostId = row?.host_id ?? null;
    const agent = await hosts.agent(hostId).catch(() => undefined);
    const info = (await agent?.getSandbox({ sandboxId }).catch(() => undefined))?.sandbox;
    const token = row && !row.allow_public_traffic ? deps.trafficToken?.(sandboxId) : undefined;
    // Private without a way to check its token: refused rather than opened.
    if (row && !row.allow_public_traffic && !token) return { kind: 'gone' };
    const privately = (t: TrafficTarget): TrafficTarget =>
      t.kind === 'target' && token ? { ...t, trafficToken: token } : t;
    if (info?.status === hostagent.SandboxStatus.RUNNING)
      return privately(target(info, await hosts.route(hostId)));
    if (info?.status !== hostagent.SandboxStatus.PAUSED) return { kind: 'gone' };
    if (row?.status !== 'paused' || !row.auto_resume) return { kind: 'gone' };
    let pending = resuming.get(sandboxId);
    if (!pending) {
      pending = resumeSandbox(deps, sandboxId)
        .then(
          async (resumed) => privately(target(resumed, await hosts.route(hostId))),
          (err: unknown) => {
            logger.warn({ sandboxId, err }, 'auto-resume on traffic failed');
            return { kind: 'gone' } as const;
          },
        )
        .finally(() => resuming.delete(sandboxId));
      resuming.set(sandboxId, pending);
      logger.info({ sandboxId }, 'resuming on traffic');
    }
    return pending;
  }

  function activity(sandboxId: string): void {
    agentOfSandbox(deps, sandboxId)
      .then((agent) => agent.pingSandbox({ sandboxId }))
      .catch(() => undefined);
  }

  return { resolve, activity };
}

function target(info: hostagent.Sandbox, route: HostRoute): TrafficTarget {
  // Through the agent: it alone knows the slot address; the id names the sandbox in Host headers.
  if (route.kind === 'tunnel') return { kind: 'target', host: info.id, tunnel: route.session };
  try {
    return { kind: 'target', host: parseHostPort(info.envdAddress).host };
  } catch {
    return { kind: 'gone' }; // no address (yet): nothing to send traffic to
  }
}
