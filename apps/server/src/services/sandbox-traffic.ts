import { hostagent } from '@wrenn/contracts';
import { parseHostPort, type Logger } from '@wrenn/core';
import type { Db } from '../db/database.js';
import type { AgentClient } from '../http/app-types.js';
import { resumeSandbox } from './sandbox-lifecycle.js';

export type TrafficTarget = { kind: 'target'; host: string } | { kind: 'gone' };

/**
 * Where traffic for a sandbox goes: its address on this host while it runs; a paused sandbox created
 * with auto-resume is resumed first (concurrent requests share one resume). Anything else is gone
 * (E2B answers 502 then, and its SDK reads that as "not running").
 */
export function sandboxTraffic(deps: {
  db: Db;
  agent: AgentClient;
  logger: Logger;
  sandboxReleased?: (sandboxId: string) => void;
}) {
  const { db, agent, logger } = deps;
  const resuming = new Map<string, Promise<TrafficTarget>>();

  async function resolve(sandboxId: string): Promise<TrafficTarget> {
    const info = (await agent.getSandbox({ sandboxId }).catch(() => undefined))?.sandbox;
    if (info?.status === hostagent.SandboxStatus.RUNNING) return target(info);
    if (info?.status !== hostagent.SandboxStatus.PAUSED) return { kind: 'gone' };
    const row = await db
      .selectFrom('sandboxes')
      .select('auto_resume')
      .where('id', '=', sandboxId)
      .where('status', '=', 'paused')
      .executeTakeFirst();
    if (!row?.auto_resume) return { kind: 'gone' };
    let pending = resuming.get(sandboxId);
    if (!pending) {
      pending = resumeSandbox(deps, sandboxId)
        .then(target, (err: unknown) => {
          logger.warn({ sandboxId, err }, 'auto-resume on traffic failed');
          return { kind: 'gone' } as const;
        })
        .finally(() => resuming.delete(sandboxId));
      resuming.set(sandboxId, pending);
      logger.info({ sandboxId }, 'resuming on traffic');
    }
    return pending;
  }

  function activity(sandboxId: string): void {
    agent.pingSandbox({ sandboxId }).catch(() => undefined);
  }

  return { resolve, activity };
}

function target(info: hostagent.Sandbox): TrafficTarget {
  try {
    return { kind: 'target', host: parseHostPort(info.envdAddress).host };
  } catch {
    return { kind: 'gone' }; // no address (yet): nothing to send traffic to
  }
}
