import { create } from '@bufbuild/protobuf';
import type { BigIntStats } from 'node:fs';
import { lstat, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { filesystem as fspb } from '@wrenn/contracts';
import type { IdNames } from '../users/user-directory.js';
import { permissionsString } from './file-mode.js';

export function fileType(st: BigIntStats): fspb.FileType {
  if (st.isFile()) return fspb.FileType.FILE;
  if (st.isDirectory()) return fspb.FileType.DIRECTORY;
  if (st.isSymbolicLink()) return fspb.FileType.SYMLINK;
  return fspb.FileType.UNSPECIFIED;
}

/**
 * EntryInfo for `path` (absolute) without following a final symlink, like E2B: a symlink is
 * reported with its target's type and permission bits and the resolved target in symlinkTarget;
 * `permissions` and size stay the link's own.
 * @throws the lstat error (ENOENT …) for the caller to map.
 */
export async function entryInfo(path: string, names: IdNames): Promise<fspb.EntryInfo> {
  const st = await lstat(path, { bigint: true });
  let type = fileType(st);
  let mode = Number(st.mode) & 0o777;
  let symlinkTarget: string | undefined;
  if (st.isSymbolicLink()) {
    try {
      symlinkTarget = await realpath(path);
      const target = await stat(symlinkTarget, { bigint: true });
      type = fileType(target);
      mode = Number(target.mode) & 0o777;
    } catch {
      // Dangling or looping link: report the link itself.
      symlinkTarget ??= path;
    }
  }
  return create(fspb.EntryInfoSchema, {
    name: basename(path),
    type,
    path,
    size: st.size,
    mode,
    permissions: permissionsString(Number(st.mode)),
    owner: names.userName(Number(st.uid)),
    group: names.groupName(Number(st.gid)),
    modifiedTime: { seconds: st.mtimeNs / 1_000_000_000n, nanos: Number(st.mtimeNs % 1_000_000_000n) },
    symlinkTarget,
  });
}
