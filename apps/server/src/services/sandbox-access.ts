import type { Db } from '../db/database.js';
import { notFound } from '../http/errors.js';

/** The team's live sandbox row; another team's sandbox is indistinguishable from a missing one. */
export async function ownedSandbox(db: Db, teamId: string, id: string) {
  const row = await db
    .selectFrom('sandboxes')
    .selectAll()
    .where('id', '=', id)
    .where('team_id', '=', teamId)
    .where('status', '!=', 'stopped')
    .executeTakeFirst();
  if (!row) throw notFound('sandbox', id);
  return row;
}
