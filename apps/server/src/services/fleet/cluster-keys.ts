import { createCertificateAuthority, generateKeyPair, type CertificateAuthority } from '@wrenn/pki';
import type { Db } from '../../db/database.js';

/** The cluster's secrets: the CA that signs host and control-plane certificates, and the host-token key. */
export interface ClusterKeys {
  ca: CertificateAuthority;
  /** ECDSA P-256 (PKCS#8 / SPKI PEM) for host JWTs (ES256). */
  hostTokenKey: { privateKeyPem: string; publicKeyPem: string };
}

/**
 * The cluster's keys from the database, made by whichever server gets there first: each is
 * inserted only if absent and then read back, so replicas starting together agree on one.
 */
export async function loadClusterKeys(db: Db): Promise<ClusterKeys> {
  const ca = await keyOnce(db, 'ca', async () => {
    const made = await createCertificateAuthority();
    return { certPem: made.certPem, keyPem: made.keyPem };
  });
  const hostTokenKey = await keyOnce(db, 'host_token_key', async () => {
    const made = await generateKeyPair();
    return { privateKeyPem: made.privateKeyPem, publicKeyPem: made.publicKeyPem };
  });
  return {
    ca: { certPem: field(ca, 'certPem'), keyPem: field(ca, 'keyPem') },
    hostTokenKey: {
      privateKeyPem: field(hostTokenKey, 'privateKeyPem'),
      publicKeyPem: field(hostTokenKey, 'publicKeyPem'),
    },
  };
}

async function keyOnce(
  db: Db,
  name: 'ca' | 'host_token_key',
  make: () => Promise<Record<string, string>>,
): Promise<Record<string, string>> {
  const read = () =>
    db.selectFrom('cluster_keys').select('value').where('name', '=', name).executeTakeFirst();
  const existing = await read();
  if (existing) return existing.value;
  await db
    .insertInto('cluster_keys')
    .values({ name, value: JSON.stringify(await make()) })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const stored = await read();
  if (!stored) throw new Error(`cluster key ${name} could not be stored`);
  return stored.value;
}

function field(value: Record<string, string>, key: string): string {
  const v = value[key];
  if (typeof v !== 'string' || !v) throw new Error(`cluster key is missing ${key}`);
  return v;
}
