import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointMetadata, savedMountOptions } from './checkpoint-header.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wrenn-ckpt-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A checkpoint.img laid out as runsc writes one: magic, metadata length, metadata, state. */
async function writeCheckpoint(metadata: object, { length }: { length?: number } = {}) {
  const json = Buffer.from(JSON.stringify(metadata));
  const head = Buffer.alloc(16);
  head.write('gVisorSF', 0, 'latin1');
  head.writeBigUInt64BE(BigInt(length ?? json.length), 8);
  await writeFile(path.join(dir, 'checkpoint.img'), Buffer.concat([head, json, Buffer.from('state…')]));
}

const specsWith = (mounts: object[]) => ({
  container_count: '1',
  container_specs: JSON.stringify({ __no_name_0: { ociVersion: '1.0.2', mounts } }),
});

describe('savedMountOptions', () => {
  it('reads a mount’s options from the spec the checkpoint was taken with', async () => {
    await writeCheckpoint(
      specsWith([
        { destination: '/proc', type: 'proc' },
        { destination: '/dev/shm', type: 'tmpfs', options: ['nosuid', 'size=128m'] },
      ]),
    );
    expect(await savedMountOptions(dir, '/dev/shm')).toEqual(['nosuid', 'size=128m']);
    expect(await savedMountOptions(dir, '/proc')).toEqual([]);
    expect(await savedMountOptions(dir, '/nowhere')).toBeUndefined();
  });

  it('says nothing of a missing, foreign, truncated or garbled checkpoint', async () => {
    expect(await savedMountOptions(dir, '/dev/shm')).toBeUndefined();
    await writeFile(path.join(dir, 'checkpoint.img'), 'not a gVisor state file at all');
    expect(await checkpointMetadata(dir)).toBeUndefined();
    await writeCheckpoint(specsWith([]), { length: 1 << 30 });
    expect(await checkpointMetadata(dir)).toBeUndefined();
    await writeCheckpoint(specsWith([]), { length: 4096 });
    expect(await checkpointMetadata(dir)).toBeUndefined();
    await writeCheckpoint({ container_specs: '{not json' });
    expect(await savedMountOptions(dir, '/dev/shm')).toBeUndefined();
  });
});
