import { constants } from 'node:fs';

// Type and special bits in the order Go's os.FileMode.String() prints them; E2B's envd fills
// EntryInfo.permissions with that string, so we produce the same (e.g. `drwxr-xr-x`, `Lrwxrwxrwx`,
// `dtrwxrwxrwx` for /tmp).
const { S_IFMT, S_IFDIR, S_IFLNK, S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK } = constants;
// Not in Node's typings of fs.constants; the values are fixed by POSIX.
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** `mode` is a raw st_mode (type bits included). */
export function permissionsString(mode: number): string {
  const type = mode & S_IFMT;
  let prefix = '';
  if (type === S_IFDIR) prefix += 'd';
  if (type === S_IFLNK) prefix += 'L';
  if (type === S_IFBLK || type === S_IFCHR) prefix += 'D';
  if (type === S_IFIFO) prefix += 'p';
  if (type === S_IFSOCK) prefix += 'S';
  if (mode & S_ISUID) prefix += 'u';
  if (mode & S_ISGID) prefix += 'g';
  if (type === S_IFCHR) prefix += 'c';
  if (mode & S_ISVTX) prefix += 't';
  const rwx = 'rwxrwxrwx';
  let perms = '';
  for (let i = 0; i < 9; i++) perms += mode & (1 << (8 - i)) ? rwx[i] : '-';
  return (prefix || '-') + perms;
}
