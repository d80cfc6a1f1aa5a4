import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { SandboxesTable } from '../db/schema.js';
import { badRequest, notFound } from '../http/errors.js';

export type SandboxStatus = SandboxesTable['status'];

/** The team's live sandbox row; another team's sandbox is indistinguishable from a missing one. */
export async function ownedSandbox(db: Db, teamId: string, id: string) {
  const row = await db
    .selectFrom('sandboxes')
    .selectAll()
    .where('id', '=', id)
    .where('team_id', '=', teamId)
    .where('status', '!=', 'stopped')
    .where('build_id', 'is', null)
    .executeTakeFirst();
  if (!row) throw notFound('sandbox', id);
  return row;
}

export type SandboxRow = Awaited<ReturnType<typeof ownedSandbox>>;

export interface SandboxListing {
  /** Only these statuses; default every status but `stopped`. */
  statuses?: SandboxStatus[];
  /** Only sandboxes whose metadata has every one of these pairs. */
  metadata?: Record<string, string>;
  /** Oldest first (default) or newest first; ties broken by id, so pages never overlap. */
  order?: 'asc' | 'desc';
  /** Only the sandboxes after this one in that order (a page's cursor). */
  after?: { createdAt: Date; id: string };
  limit?: number;
}

/** The team's sandboxes, for both APIs' listings. */
export async function listTeamSandboxes(db: Db, teamId: string, listing: SandboxListing = {}) {
  const desc = listing.order === 'desc';
  let query = db
    .selectFrom('sandboxes')
    .selectAll()
    .where('team_id', '=', teamId)
    // A template build's sandbox is the build's (GET the build to see it).
    .where('build_id', 'is', null);
  query = listing.statuses
    ? query.where('status', 'in', listing.statuses)
    : query.where('status', '!=', 'stopped');
  // No sandbox can have a NUL in its metadata (jsonb cannot hold one), and PostgreSQL refuses the query.
  if (listing.metadata && Object.entries(listing.metadata).some(([k, v]) => (k + v).includes('\u0000')))
    throw badRequest('metadata', 'must not contain a NUL character');
  if (listing.metadata && Object.keys(listing.metadata).length > 0)
    query = query.where(sql<boolean>`metadata @> ${JSON.stringify(listing.metadata)}::jsonb`);
  const after = listing.after;
  if (after)
    query = query.where((eb) =>
      eb.or([
        eb('created_at', desc ? '<' : '>', after.createdAt),
        eb.and([eb('created_at', '=', after.createdAt), eb('id', desc ? '<' : '>', after.id)]),
      ]),
    );
  query = query.orderBy('created_at', desc ? 'desc' : 'asc').orderBy('id', desc ? 'desc' : 'asc');
  if (listing.limit !== undefined) query = query.limit(listing.limit);
  return query.execute();
}
