import { sql } from 'kysely';
import { Code, ConnectError, randomId, type Logger } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { Db } from '../db/database.js';
import type { PhaseTimes } from '../http/server-timing.js';
import { ensureTemplateOn } from './fleet/artifacts.js';
import { agentOfSandbox, type Hosts } from './fleet/host-agents.js';
import { dropReplica, promoteReplica } from './fleet/paused-replicas.js';
import { movePausedSandbox } from './fleet/sandbox-moves.js';
import { DEFAULT_NEED } from './fleet/placement.js';
import { flushMetrics, flushMetricsLater } from './metrics-store.js';
import { CREATE_LEASE_RENEW_MS, statusFromAgent } from './reconciler.js';
import { resolveTemplate, type ResolvedTemplate } from './templates.js';
import { releasing } from './sandbox-release.js';
import { egressOf, type SandboxNetwork } from './network-policy.js';

/** The sandbox operations both APIs (Wrenn's `/v1` and the E2B-compatible one) share. */
export interface SandboxLifecycleDeps {
  db: Db;
  /** Every host's agent, and placement for new sandboxes. */
  hosts: Hosts;
  /** Called once a sandbox was destroyed, paused or resumed, whether or not that succeeded. */
  sandboxReleased?: (sandboxId: string) => void;
  /** Called once a sandbox runs after a create or resume (after `sandboxReleased` for a resume). */
  sandboxStarted?: (sandboxId: string) => void;
  logger?: Logger;
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
  /** Already resolved (a build starting from a cache layer): `template` is then only shown. */
  resolved?: ResolvedTemplate;
  /** The template build this sandbox runs: not listed among the team's sandboxes. */
  buildId?: string;
  /** Its egress policy (services/network-policy.ts); unset: none of its own. */
  network?: SandboxNetwork;
  /** false: traffic through the proxy needs the sandbox's traffic token. */
  allowPublicTraffic?: boolean;
}

/**
 * Places the sandbox on a host, records it as `pending` there (so placement counts it while it is
 * made, and the reconciler leaves it to this request), asks that host's agent to create it under
 * the id chosen here, and records what the agent made. A failed create leaves no row.
 */
export async function createSandbox(
  deps: SandboxLifecycleDeps,
  teamId: string,
  spec: NewSandbox,
  signal?: AbortSignal,
  times?: PhaseTimes,
) {
  const { db, hosts } = deps;
  const template = spec.resolved ?? (await resolveTemplate(db, teamId, spec.template));
  times?.mark('template');
  const files = template.files ?? [];
  const need = template.snapshot ?? {
    vcpus: spec.vcpus ?? DEFAULT_NEED.vcpus,
    memoryMb: spec.memoryMb ?? DEFAULT_NEED.memoryMb,
    diskMb: spec.diskMb ?? DEFAULT_NEED.diskMb,
  };
  // A snapshot's files are copied to where the sandbox goes, unless a host that holds them fits.
  const hostId = await hosts.place(teamId, need, {
    prefer: files.at(-1)?.hostIds,
    template: template.agentName,
  });
  times?.mark('place');
  const id = randomId(20);
  await db
    .insertInto('sandboxes')
    .values({
      id,
      team_id: teamId,
      host_id: hostId,
      template: spec.shownTemplate ?? template.name,
      status: 'pending',
      vcpus: need.vcpus,
      memory_mb: need.memoryMb,
      disk_mb: need.diskMb,
      timeout_sec: spec.timeoutSec,
      metadata: JSON.stringify(spec.metadata),
      on_timeout: spec.onTimeout ?? 'pause',
      auto_resume: spec.autoResume ?? false,
      build_id: spec.buildId ?? null,
      network: spec.network ? JSON.stringify(spec.network) : null,
      allow_public_traffic: spec.allowPublicTraffic ?? true,
    })
    .execute();
  times?.mark('insert');
  // While this request lives it renews the pending row (the database's clock), so the reconciler
  // can tell a create in flight from one whose server died during it within seconds.
  const lease = setInterval(() => {
    db.updateTable('sandboxes')
      .set({ updated_at: sql<Date>`now()` })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .execute()
      .catch((err: unknown) => deps.logger?.warn({ sandboxId: id, err }, 'could not renew a create'));
  }, CREATE_LEASE_RENEW_MS);
  let info: hostagent.Sandbox;
  try {
    for (const held of files)
      if (hostId && !held.hostIds.includes(hostId)) await ensureTemplateOn(deps, held, hostId, signal);
    const agent = await hosts.agent(hostId);
    times?.mark('copy');
    const { sandbox } = await agent.createSandbox(
      {
        sandboxId: id,
        template: template.agentName,
        vcpus: spec.vcpus ?? 0,
        memoryMb: spec.memoryMb ?? 0,
        diskMb: spec.diskMb ?? 0,
        timeoutSec: spec.timeoutSec,
        env: { ...template.env, ...spec.env },
        defaultUser: template.user ?? '',
        defaultWorkdir: template.workdir ?? '',
        metadata: spec.metadata,
        egress: egressOf(spec.network),
      },
      { signal },
    );
    info = sandbox!;
    times?.mark('agent');
  } catch (err) {
    await db.deleteFrom('sandboxes').where('id', '=', id).where('status', '=', 'pending').execute();
    throw err;
  } finally {
    clearInterval(lease);
  }
  deps.sandboxStarted?.(id);
  const row = await db
    .updateTable('sandboxes')
    .set({
      status: statusFromAgent(info.status),
      vcpus: info.vcpus,
      memory_mb: info.memoryMb,
      disk_mb: info.diskMb,
      timeout_sec: info.timeoutSec,
      metadata: JSON.stringify(info.metadata),
      updated_at: new Date(),
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
  times?.mark('update');
  return { row, info };
}

/** Destroys the sandbox (running or paused) and marks its row stopped; its last day of metrics stays. */
export async function destroySandbox(deps: SandboxLifecycleDeps, id: string): Promise<void> {
  const { db } = deps;
  const row = await db
    .selectFrom('sandboxes')
    .select(['host_id', 'replica_host_id'])
    .where('id', '=', id)
    .executeTakeFirst();
  if (row?.replica_host_id) await dropReplica(deps, id, row.replica_host_id);
  const agent = await deps.hosts.agent(row?.host_id ?? null);
  await flushMetrics(db, agent, id, ['24h']).catch(() => undefined);
  await releasing(deps, id, () =>
    agent.destroySandbox({ sandboxId: id }).catch((err: unknown) => {
      // Gone from the agent already (it restarted, the host was lost): the row still goes.
      if (ConnectError.from(err).code !== Code.NotFound) throw err;
    }),
  );
  await setStatus(db, id, 'stopped');
}

export async function pauseSandbox(
  deps: SandboxLifecycleDeps,
  id: string,
  times?: PhaseTimes,
): Promise<hostagent.Sandbox> {
  const { db } = deps;
  const agent = await agentOfSandbox(deps, id);
  times?.mark('host');
  const { sandbox } = await releasing(deps, id, () => agent.pauseSandbox({ sandboxId: id }));
  times?.mark('agent');
  await setStatus(db, id, statusFromAgent(sandbox!.status));
  times?.mark('update');
  // While it sleeps, its metrics come from the database (the agent may restart meanwhile); stored
  // after the answer, which does not wait for them.
  flushMetricsLater(db, agent, id, ['10m', '2h', '24h'], deps.logger);
  return sandbox!;
}

export async function resumeSandbox(
  deps: SandboxLifecycleDeps,
  id: string,
  timeoutSec?: number,
): Promise<hostagent.Sandbox> {
  const { db } = deps;
  const resumeOn = async () => {
    const agent = await agentOfSandbox(deps, id);
    // The row's policy, always: the agent's copy may be older (changed while its host was away) or
    // absent (the sandbox moved here from another host).
    const egress = egressOf(where?.network);
    return releasing(deps, id, () => agent.resumeSandbox({ sandboxId: id, timeoutSec, egress }));
  };
  const where = await db
    .selectFrom('sandboxes')
    .leftJoin('hosts', 'hosts.id', 'sandboxes.host_id')
    .select(['sandboxes.status', 'sandboxes.replica_host_id', 'hosts.draining', 'sandboxes.network'])
    .where('sandboxes.id', '=', id)
    .executeTakeFirst();
  // Its host is lost: it resumes from its copy on another host, when there is one.
  if (where?.status === 'missing') await promoteReplica(deps, id);
  // A draining host takes nothing new: the sandbox moves first (to its copy's host when it has
  // one). A host without room for it (RESOURCE_EXHAUSTED) sends it elsewhere too.
  else if (where?.status === 'paused' && where.draining) await movePausedSandbox(deps, id);
  // Running again, it leaves its copy behind.
  else if (where?.replica_host_id) await dropReplica(deps, id, where.replica_host_id);
  const { sandbox } = await resumeOn().catch(async (err: unknown) => {
    if (ConnectError.from(err).code !== Code.ResourceExhausted) throw err;
    await movePausedSandbox(deps, id);
    return resumeOn();
  });
  deps.sandboxStarted?.(id);
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
  deps: SandboxLifecycleDeps,
  id: string,
  timeoutSec: number,
): Promise<void> {
  const { db } = deps;
  const agent = await agentOfSandbox(deps, id);
  await agent.setSandboxTimeout({ sandboxId: id, timeoutSec });
  await db
    .updateTable('sandboxes')
    .set({ timeout_sec: timeoutSec, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

/**
 * Replaces the sandbox's egress policy (undefined: none of its own). A running sandbox has it in
 * force before this returns (its agent first, then the row: a refused update changes nothing); a
 * paused one gets it when it resumes (resume always sends the row's).
 */
export async function updateSandboxNetwork(
  deps: SandboxLifecycleDeps,
  id: string,
  network: SandboxNetwork | undefined,
): Promise<void> {
  const { db } = deps;
  const row = await db.selectFrom('sandboxes').select(['status']).where('id', '=', id).executeTakeFirst();
  if (row?.status === 'running') {
    const agent = await agentOfSandbox(deps, id);
    await agent.updateNetwork({ sandboxId: id, egress: egressOf(network) });
  } else if (row?.status !== 'paused' && row?.status !== 'missing') {
    throw new ConnectError(`sandbox ${id} is ${row?.status ?? 'gone'}`, Code.FailedPrecondition);
  }
  await db
    .updateTable('sandboxes')
    .set({ network: network ? JSON.stringify(network) : null, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

/** What the agent knows of the sandbox now, or undefined when it cannot say (gone, unreachable). */
export async function sandboxInfo(
  deps: Pick<SandboxLifecycleDeps, 'db' | 'hosts'>,
  id: string,
): Promise<hostagent.Sandbox | undefined> {
  const agent = await agentOfSandbox(deps, id).catch(() => undefined);
  return (await agent?.getSandbox({ sandboxId: id }).catch(() => undefined))?.sandbox;
}

async function setStatus(db: Db, id: string, status: ReturnType<typeof statusFromAgent>): Promise<void> {
  await db.updateTable('sandboxes').set({ status, updated_at: new Date() }).where('id', '=', id).execute();
}
