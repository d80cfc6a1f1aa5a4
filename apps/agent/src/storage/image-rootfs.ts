import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  access,
  chmod,
  chown,
  lstat,
  mkdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition } from '@wrenn/core';
import { addDefaultUser, EMPTY_ACCOUNTS, type AccountFiles, type DefaultUser } from './default-user.js';

const MAX_SYMLINKS = 40;

/**
 * `p` (absolute, as seen inside the image) as a host path below `root`, with every symlink on the
 * way resolved as the sandbox would see it: absolute targets from `root`, `..` never above it. The
 * image is untrusted and the agent is root: a plain path join would follow `/etc -> /host/etc` out of
 * the image. With `followLast: false` the last component is left as it is (to replace a symlink
 * rather than write through it). Nothing else writes into an image being prepared, so the answer
 * stays true while it is used.
 */
export async function resolveInRoot(root: string, p: string, followLast = true): Promise<string> {
  const pending = p.split('/').filter((c) => c !== '' && c !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, name);
    const isLast = pending.length === 0;
    const info = await lstat(candidate).catch(() => undefined);
    if (info?.isSymbolicLink() && (followLast || !isLast)) {
      if (++links > MAX_SYMLINKS)
        throw failedPrecondition(`the image's ${p}: too many levels of symbolic links`);
      const target = await readlink(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'));
      continue;
    }
    resolved.push(name);
  }
  return path.join(root, ...resolved);
}

/** A mount point: a directory at `p` itself (a symlink or file there is replaced), with `mode`. */
async function ensureMountDir(root: string, p: string, mode: number): Promise<string> {
  const target = await resolveInRoot(root, p, false);
  const info = await lstat(target).catch(() => undefined);
  if (info && !info.isDirectory()) await rm(target, { force: true });
  if (!info?.isDirectory()) await mkdir(target, { recursive: true });
  await chmod(target, mode);
  return target;
}

/** A directory at `p` as the image resolves it (a symlink to a directory is fine); made if missing. */
async function ensureDir(root: string, p: string, mode: number): Promise<string> {
  const target = await resolveInRoot(root, p);
  const info = await lstat(target).catch(() => undefined);
  if (info && !info.isDirectory())
    throw failedPrecondition(`the image's ${p} is not a directory; Wrenn needs one there`);
  if (!info) await mkdir(target, { recursive: true, mode });
  return target;
}

/**
 * Writes `content` to `p` as a new regular file (temp + rename: a symlink or hard link there is
 * replaced, never written through), keeping the old file's mode and owner when there was one.
 */
async function replaceFile(root: string, p: string, content: string, mode: number): Promise<void> {
  const target = await resolveInRoot(root, p, false);
  const old = await lstat(target).catch(() => undefined);
  await mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.wrenn-${randomBytes(4).toString('hex')}`;
  await writeFile(temp, content, { mode, flag: 'wx' });
  if (old?.isFile()) {
    await chmod(temp, old.mode & 0o7777);
    await chown(temp, old.uid, old.gid);
  } else {
    await chmod(temp, mode);
  }
  if (old?.isDirectory()) await rm(target, { recursive: true, force: true });
  await rename(temp, target);
}

/** The text of the image's file `p` (symlinks followed inside the image), or undefined. */
async function readInRoot(root: string, p: string): Promise<string | undefined> {
  const file = await resolveInRoot(root, p);
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return undefined;
  return readFile(file, 'utf8');
}

async function isExecutable(root: string, p: string): Promise<boolean> {
  const file = await resolveInRoot(root, p);
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return false;
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/**
 * Makes an unpacked image bootable by Wrenn, whatever its distro: the mount points the sandbox
 * needs (`/opt/wrenn`, `/tmp` 1777, `/proc`, `/dev`, `/sys`, `/etc/resolv.conf`, `/etc/hosts`),
 * `/etc/hostname`, and the default user (docs/templates.md). envd and tini come from the host at
 * start; nothing of them is copied in.
 */
export async function prepareImageRootfs(root: string, now = new Date()): Promise<DefaultUser> {
  for (const dir of ['/etc', '/home']) await ensureDir(root, dir, 0o755);
  await ensureDir(root, '/root', 0o700);
  // Mount points of every sandbox (oci-spec.ts, guest.ts).
  for (const dir of ['/proc', '/dev', '/sys', '/opt/wrenn']) await ensureMountDir(root, dir, 0o755);
  await ensureMountDir(root, '/tmp', 0o1777);
  await replaceFile(root, '/etc/hostname', 'wrenn\n', 0o644);
  // Mount points: the agent binds each sandbox's own files over them.
  for (const file of ['/etc/resolv.conf', '/etc/hosts']) {
    const target = await resolveInRoot(root, file, false);
    const info = await lstat(target).catch(() => undefined);
    if (!info?.isFile()) await replaceFile(root, file, '', 0o644);
  }

  const shell = (await isExecutable(root, '/bin/bash')) ? '/bin/bash' : '/bin/sh';
  const current: AccountFiles = {
    passwd: (await readInRoot(root, '/etc/passwd')) ?? EMPTY_ACCOUNTS.passwd,
    group: (await readInRoot(root, '/etc/group')) ?? EMPTY_ACCOUNTS.group,
    shadow: await readInRoot(root, '/etc/shadow'),
    gshadow: await readInRoot(root, '/etc/gshadow'),
  };
  const { files, user } = addDefaultUser(current, { shell, now });
  if (user.added) {
    await replaceFile(root, '/etc/passwd', files.passwd, 0o644);
    await replaceFile(root, '/etc/group', files.group, 0o644);
    if (files.shadow !== undefined) await replaceFile(root, '/etc/shadow', files.shadow, 0o640);
    if (files.gshadow !== undefined) await replaceFile(root, '/etc/gshadow', files.gshadow, 0o640);
  }
  const home = await resolveInRoot(root, user.home);
  if (!(await lstat(home).catch(() => undefined))) {
    await mkdir(home, { recursive: true, mode: 0o750 });
    await chown(home, user.uid, user.gid);
  }
  // Like E2B's images and Wrenn's base: the default user may use sudo, when the image has it (an
  // image that brought its own `user` also brought its own rules).
  const sudoers = await resolveInRoot(root, '/etc/sudoers.d');
  if (
    user.added &&
    (await stat(sudoers).catch(() => undefined))?.isDirectory() &&
    (await isExecutable(root, '/usr/bin/sudo'))
  )
    await replaceFile(root, '/etc/sudoers.d/wrenn-user', `${user.name} ALL=(ALL) NOPASSWD:ALL\n`, 0o440);
  return user;
}
