import { Code, ConnectError, errorMessage, type Logger } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import type { Db } from '../../db/database.js';
import { ApiError } from '../../http/errors.js';
import type { Hosts } from './host-agents.js';

export interface ArtifactDeps {
  db: Db;
  hosts: Hosts;
  logger?: Logger;
}

export type ArtifactRef = { kind: 'template' | 'sandbox'; name: string };

/**
 * Copies a template or a paused sandbox from one host to another through this control plane: the
 * export stream of one agent is the import stream of the other, message by message, so nothing is
 * held here but the chunk in flight, and the receiver checks the sender's size and SHA-256 before
 * it keeps anything. Hosts never talk to each other (each answers only the control plane).
 */
export async function copyArtifact(
  hosts: Hosts,
  from: string,
  to: string,
  ref: ArtifactRef,
  signal?: AbortSignal,
): Promise<hostagent.ImportArtifactResponse> {
  const [source, target] = await Promise.all([hosts.agent(from), hosts.agent(to)]);
  const both = new AbortController();
  const stop = () => both.abort(signal?.reason);
  signal?.addEventListener('abort', stop, { once: true });
  const kind = ref.kind === 'sandbox' ? hostagent.ArtifactKind.SANDBOX : hostagent.ArtifactKind.TEMPLATE;
  try {
    const parts = source.exportArtifact({ artifact: { kind, name: ref.name } }, { signal: both.signal });
    async function* relay() {
      for await (const message of parts) yield { part: message.part };
    }
    return await target.importArtifact(relay(), { signal: both.signal });
  } finally {
    // An import that failed early must not leave the export reading on.
    both.abort();
    signal?.removeEventListener('abort', stop);
  }
}

/**
 * A platform host takes files only from platform hosts: what a team's own (BYOC) host sends is
 * that team's to trust, not the platform's (it is unpacked by the receiving agent).
 */
const trusted = (from: string | undefined, to: string | undefined) => !(from === 'byoc' && to === 'platform');

export async function assertTrustedCopy(db: Db, from: string, to: string): Promise<void> {
  const kinds = await db.selectFrom('hosts').select(['id', 'kind']).where('id', 'in', [from, to]).execute();
  const kindOf = (id: string) => kinds.find((h) => h.id === id)?.kind;
  if (!trusted(kindOf(from), kindOf(to)))
    throw new ApiError(
      409,
      'failed_precondition',
      `host ${to} is a platform host and takes nothing from a team's own host (${from})`,
    );
}

const copying = new Map<string, Promise<void>>();

/**
 * Makes sure host `hostId` holds the template's files, copying them from an online host that does
 * when it does not. Copies of one template to one host share one transfer in this process; across
 * replicas the agent's staging makes the second a no-op (ALREADY_EXISTS).
 */
export function ensureTemplateOn(
  deps: ArtifactDeps,
  template: { id: string; agentName: string },
  hostId: string,
  signal?: AbortSignal,
): Promise<void> {
  const key = `${template.id}@${hostId}`;
  const pending = copying.get(key);
  if (pending) return pending;
  const run = copyTemplate(deps, template, hostId, signal).finally(() => copying.delete(key));
  copying.set(key, run);
  return run;
}

async function copyTemplate(
  deps: ArtifactDeps,
  template: { id: string; agentName: string },
  hostId: string,
  signal?: AbortSignal,
): Promise<void> {
  const { db, hosts } = deps;
  const holders = await holdersOf(db, template.id);
  if (holders.some((h) => h.id === hostId)) return;
  const target = await db.selectFrom('hosts').select('kind').where('id', '=', hostId).executeTakeFirst();
  const source = holders.find((h) => h.status === 'online' && trusted(h.kind, target?.kind));
  if (!source)
    throw new ApiError(
      503,
      'unavailable',
      `template: no host that holds ${template.agentName} is online (${holders.length} hold it)`,
    );
  const started = Date.now();
  try {
    await copyArtifact(hosts, source.id, hostId, { kind: 'template', name: template.agentName }, signal);
  } catch (err) {
    if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
  }
  await db
    .insertInto('template_replicas')
    .values({ template_id: template.id, host_id: hostId })
    .onConflict((oc) => oc.doNothing())
    .execute();
  deps.logger?.info(
    { template: template.agentName, from: source.id, to: hostId, ms: Date.now() - started },
    'template copied to another host',
  );
}

/**
 * Deletes a template's files on every host that holds them. A host that cannot be told now (down,
 * or the template in use there) gets the delete when it next reports in (`host_cleanups`).
 */
export async function deleteTemplateEverywhere(
  deps: ArtifactDeps,
  template: { id: string; agentName: string },
): Promise<void> {
  const { db } = deps;
  const holders = await holdersOf(db, template.id);
  const missed: string[] = [];
  await Promise.all(
    holders.map(async (host) => {
      if (host.status === 'deleted') return;
      const done = host.status === 'online' && (await deleteOnHost(deps, host.id, template.agentName));
      if (!done) missed.push(host.id);
    }),
  );
  if (missed.length)
    await db
      .insertInto('host_cleanups')
      .values(
        missed.map((hostId) => ({ host_id: hostId, kind: 'template' as const, name: template.agentName })),
      )
      .onConflict((oc) => oc.doNothing())
      .execute();
}

/** The hosts that hold a template's files, first copied first. */
function holdersOf(db: Db, templateId: string) {
  return db
    .selectFrom('template_replicas')
    .innerJoin('hosts', 'hosts.id', 'template_replicas.host_id')
    .select(['hosts.id', 'hosts.status', 'hosts.kind'])
    .where('template_replicas.template_id', '=', templateId)
    .orderBy('template_replicas.created_at')
    .execute();
}

/** Deletes the host has missed, done now that it answers. */
export async function runHostCleanups(deps: ArtifactDeps, hostId: string): Promise<void> {
  const { db } = deps;
  const pending = await db.selectFrom('host_cleanups').selectAll().where('host_id', '=', hostId).execute();
  for (const cleanup of pending) {
    if (!(await deleteOnHost(deps, hostId, cleanup.name))) continue;
    await db
      .deleteFrom('host_cleanups')
      .where('host_id', '=', hostId)
      .where('kind', '=', cleanup.kind)
      .where('name', '=', cleanup.name)
      .execute();
  }
}

/** True when the host no longer has the template (deleted now, or gone already). */
async function deleteOnHost(deps: ArtifactDeps, hostId: string, name: string): Promise<boolean> {
  try {
    await (await deps.hosts.agent(hostId)).deleteSnapshot({ name }, { timeoutMs: 30_000 });
    return true;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return true;
    deps.logger?.warn(
      { hostId, template: name, err: errorMessage(err) },
      'could not delete a template on a host; retried when it next reports in',
    );
    return false;
  }
}
