import type { Db } from '../db/database.js';

/** The teams `userId` belongs to, with their role in each, oldest team first. */
export function teamsOfUser(db: Db, userId: string) {
  return db
    .selectFrom('teams')
    .innerJoin('team_members', 'team_members.team_id', 'teams.id')
    .select(['teams.id', 'teams.name', 'team_members.role', 'teams.is_byoc'])
    .where('team_members.user_id', '=', userId)
    .orderBy('teams.created_at')
    .execute();
}
