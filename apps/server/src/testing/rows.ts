import type { Insertable } from 'kysely';
import type { Db } from '../db/database.js';
import type { SandboxesTable, TemplatesTable } from '../db/schema.js';

/** A sandbox row as a test needs it (no agent involved): small defaults, any field overridden. */
export async function insertSandboxRow(
  db: Db,
  row: Pick<Insertable<SandboxesTable>, 'id' | 'team_id' | 'status'> &
    Partial<Omit<Insertable<SandboxesTable>, 'metadata'>> & { metadata?: Record<string, string> },
): Promise<void> {
  await db
    .insertInto('sandboxes')
    .values({
      template: 'base',
      vcpus: 1,
      memory_mb: 512,
      disk_mb: 1024,
      timeout_sec: 300,
      ...row,
      metadata: JSON.stringify(row.metadata ?? {}),
    })
    .execute();
}

/** A template row (a snapshot of 1 vCPU, 512 MB, 1 GiB of disk, no files) for tests that need one; its id. */
export async function insertTemplateRow(
  db: Db,
  row: Pick<Insertable<TemplatesTable>, 'team_id' | 'name'> & Partial<Insertable<TemplatesTable>>,
): Promise<string> {
  const { id } = await db
    .insertInto('templates')
    .values({
      kind: 'snapshot',
      source_sandbox_id: null,
      vcpus: 1,
      memory_mb: 512,
      disk_mb: 1024,
      size_bytes: 0,
      ...row,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return id;
}
