import { open } from 'node:fs/promises';
import path from 'node:path';

// A gVisor checkpoint (`checkpoint.img`) starts with "gVisorSF", the length of a JSON metadata
// object as 8 bytes big-endian, then that object. Its `container_specs` holds the OCI spec each
// container was running with, and `runsc restore` refuses a spec whose mounts differ from it.
const MAGIC = Buffer.from('gVisorSF');
const MAX_METADATA_BYTES = 1 << 20;

interface SavedMount {
  destination: string;
  options?: string[];
}

/** The metadata object of a gVisor checkpoint; undefined when the file is missing or not one. */
export async function checkpointMetadata(imageDir: string): Promise<Record<string, string> | undefined> {
  const file = await open(path.join(imageDir, 'checkpoint.img'), 'r').catch(() => undefined);
  if (!file) return undefined;
  try {
    const head = Buffer.alloc(16);
    const { bytesRead } = await file.read(head, 0, 16, 0);
    if (bytesRead < 16 || !head.subarray(0, 8).equals(MAGIC)) return undefined;
    const length = Number(head.readBigUInt64BE(8));
    if (length <= 0 || length > MAX_METADATA_BYTES) return undefined;
    const body = Buffer.alloc(length);
    if ((await file.read(body, 0, length, 16)).bytesRead < length) return undefined;
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, string>) : undefined;
  } catch {
    return undefined;
  } finally {
    await file.close();
  }
}

/**
 * The options a mount at `destination` had in the spec the checkpoint was taken with: `[]` when it
 * had none, undefined when the checkpoint does not say (then the current defaults are the guess).
 */
export async function savedMountOptions(
  imageDir: string,
  destination: string,
): Promise<string[] | undefined> {
  const specs = (await checkpointMetadata(imageDir))?.container_specs;
  if (typeof specs !== 'string') return undefined;
  try {
    const byContainer = JSON.parse(specs) as Record<string, { mounts?: SavedMount[] }>;
    for (const spec of Object.values(byContainer)) {
      const mount = spec.mounts?.find((m) => m.destination === destination);
      if (mount) return mount.options ?? [];
    }
  } catch {
    // Not the layout described above: let runsc judge the spec.
  }
  return undefined;
}
