import { Code, ConnectError } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { AgentClient } from '../http/app-types.js';
import type { Db } from '../db/database.js';
import { flushMetrics } from './metrics-store.js';
import { statusFromAgent } from './reconciler.js';
import { resolveTemplate } from './templates.js';
import { releasing } from './sandbox-release.js';

/** The sandbox operations both APIs (Wrenn's `/v1` and the E2B-compatible one) share. */
export interface SandboxLifecycleDeps {
  db: Db;
  agent: AgentClient;
  /** Called once a sandbox was destroyed, paused or resumed, whether or not that succeeded. */
  sandboxReleased?: (sandboxId: string) => void;
}

export interface NewSandbox {
  template: string;
  vcpus?: number;
  memoryMb?: number;
  diskMb?: number;
  timeoutSec: number;
  metadata: Record<string, string>;
  env: Record<string, string>;
  /** What happens when the inactivity timeout fires (the agent pauses; `kill` then destroys). */
  onTimeout?: 'pause' | 'kill';
  /** Traffic through the proxy resumes the sandbox when it is paused. */
  autoResume?: boolean;
  /** The template the row shows, when not `template` (a fork shows its source's, not the snapshot). */
  shownTemplate?: string;
}

export async function createSandbox(
  { db, agent }: SandboxLifecycleDeps,
  teamId: string,
  spec: NewSandbox,
  signal?: AbortSignal,
) {
  const template = await resolveTemplate(db, teamId, spec.template);
  const { sandbox } = await agent.createSandbox(
    {
      template: template.agentName,
      vcpus: spec.vcpus ?? 0,
      memoryMb: spec.memoryMb ?? 0,
      diskMb: spec.diskMb ?? 0,
      timeoutSec: spec.timeoutSec,
      env: spec.env,
      metadata: spec.metadata,
    },
    { signal },
  );
  const info = sandbox!;
  const row = await db
    .insertInto('sandboxes')
    .values({
      id: info.id,
      team_id: teamId,
      template: spec.shownTemplate ?? template.name,
      status: statusFromAgent(info.status),
      vcpus: info.vcpus,
      memory_mb: info.memoryMb,
      disk_mb: info.diskMb,
      timeout_sec: info.timeoutSec,
      metadata: JSON.stringify(info.metadata),
      on_timeout: spec.onTimeout ?? 'pause',
      auto_resume: spec.autoResume ?? false,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { row, info };
}

/** Destroys the sandbox (running or paused) and marks its row stopped; its last day of metrics stays. */
export async function destroySandbox(deps: SandboxLifecycleDeps, id: string): Promise<void> {
  const { db, agent } = deps;
  await flushMetrics(db, agent, id, ['24h']).catch(() => undefined);
  await releasing(deps, id, () =>
    agent.destroySandbox({ sandboxId: id }).catch((err: unknown) => {
      // Gone from the agent already (it restarted, the host was lost): the row still goes.
      if (ConnectError.from(err).code !== Code.NotFound) throw err;
    }),
  );
  await setStatus(db, id, 'stopped');
}

export async function pauseSandbox(deps: SandboxLifecycleDeps, id: string): Promise<hostagent.Sandbox> {
  const { db, agent } = deps;
  const { sandbox } = await releasing(deps, id, () => agent.pauseSandbox({ sandboxId: id }));
  await setStatus(db, id, statusFromAgent(sandbox!.status));
  // While it sleeps, its metrics come from the database (the agent may restart meanwhile).
  await flushMetrics(db, agent, id, ['10m', '2h', '24h']);
  return sandbox!;
}

export async function resumeSandbox(
  deps: SandboxLifecycleDeps,
  id: string,
  timeoutSec?: number,
): Promise<hostagent.Sandbox> {
  const { db, agent } = deps;
  const { sandbox } = await releasing(deps, id, () => agent.resumeSandbox({ sandboxId: id, timeoutSec }));
  await db
    .updateTable('sandboxes')
    .set({
      status: statusFromAgent(sandbox!.status),
      timeout_sec: sandbox!.timeoutSec,
      auto_paused: false,
      updated_at: new Date(),
    })
    .where('id', '=', id)
    .execute();
  return sandbox!;
}

/** Sets the inactivity timeout (0 = never) on the agent and in the row. */
export async function setSandboxTimeout(
  { db, agent }: SandboxLifecycleDeps,
  id: string,
  timeoutSec: number,
): Promise<void> {
  await agent.setSandboxTimeout({ sandboxId: id, timeoutSec });
  await db
    .updateTable('sandboxes')
    .set({ timeout_sec: timeoutSec, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

/** What the agent knows of the sandbox now, or undefined when it cannot say (gone, unreachable). */
export async function sandboxInfo(
  { agent }: Pick<SandboxLifecycleDeps, 'agent'>,
  id: string,
): Promise<hostagent.Sandbox | undefined> {
  return (await agent.getSandbox({ sandboxId: id }).catch(() => undefined))?.sandbox;
}

async function setStatus(db: Db, id: string, status: ReturnType<typeof statusFromAgent>): Promise<void> {
  await db.updateTable('sandboxes').set({ status, updated_at: new Date() }).where('id', '=', id).execute();
}
