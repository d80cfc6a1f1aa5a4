import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hashPassword } from './auth/passwords.js';
import { newApiKey } from './auth/tokens.js';
import type { Db } from './db/database.js';

export const ADMIN_EMAIL = 'admin@wrenn.local';

/** Where the first admin's API key and password are kept (0600, in the data dir). */
export function adminSecretFiles(dataDir: string): { apiKey: string; password: string } {
  return {
    apiKey: path.join(dataDir, 'server', 'admin-api-key'),
    password: path.join(dataDir, 'server', 'admin-password'),
  };
}

/**
 * On a database without users: an admin user, their team and an API key, so `wrenn up` is usable at
 * once. The key and the admin's password (for the Bearer-token routes, `/v1/admin/...`) are written
 * to the data dir (0600) for the machine's owner; the database holds only their hashes. They are
 * returned only when made by this call: later starts say where they are, never what (so a start's
 * output, which ends up in logs, holds them once at most).
 */
export async function bootstrapAdmin(
  db: Db,
  dataDir: string,
): Promise<{ apiKey: string; password: string } | undefined> {
  const { apiKey: file, password: passwordFile } = adminSecretFiles(dataDir);
  const users = await db.selectFrom('users').select(db.fn.countAll().as('n')).executeTakeFirstOrThrow();
  if (Number(users.n) > 0) return undefined;
  const { key, prefix, hash } = newApiKey();
  const password = randomBytes(18).toString('base64url');
  const passwordHash = await hashPassword(password);
  const made = await db.transaction().execute(async (tx) => {
    // Two servers started at once on a new database: the second finds the admin made and keeps out.
    const user = await tx
      .insertInto('users')
      .values({ email: ADMIN_EMAIL, password_hash: passwordHash, is_admin: true })
      .onConflict((oc) => oc.column('email').doNothing())
      .returning('id')
      .executeTakeFirst();
    if (!user) return false;
    const team = await tx
      .insertInto('teams')
      .values({ name: 'admin' })
      .returning('id')
      .executeTakeFirstOrThrow();
    await tx
      .insertInto('team_members')
      .values({ team_id: team.id, user_id: user.id, role: 'owner' })
      .execute();
    await tx
      .insertInto('api_keys')
      .values({ team_id: team.id, name: 'first admin key', prefix, key_hash: hash, created_by: user.id })
      .execute();
    return true;
  });
  if (!made) return undefined;
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, `${key}\n`, { mode: 0o600 });
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  return { apiKey: key, password };
}
