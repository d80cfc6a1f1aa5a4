import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareImageRootfs, resolveInRoot } from './image-rootfs.js';

let dir: string;
let root: string;
let outside: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wrenn-image-rootfs-'));
  root = path.join(dir, 'rootfs');
  outside = path.join(dir, 'outside');
  await mkdir(path.join(root, 'etc'), { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(outside, 'file'), 'host\n');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('paths inside an untrusted image', () => {
  it('resolves symlinks as the sandbox sees them, never above the root', async () => {
    await symlink(outside, path.join(root, 'abs'));
    await symlink('../../../..', path.join(root, 'etc/up'));
    await symlink('/etc', path.join(root, 'etc-link'));
    await symlink('loop', path.join(root, 'loop'));
    expect(await resolveInRoot(root, '/abs/file')).toBe(path.join(root, outside, 'file'));
    expect(await resolveInRoot(root, '/etc/up/x')).toBe(path.join(root, 'x'));
    expect(await resolveInRoot(root, '/../../etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await resolveInRoot(root, '/etc-link/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await resolveInRoot(root, '/etc-link', false)).toBe(path.join(root, 'etc-link'));
    await expect(resolveInRoot(root, '/loop')).rejects.toThrow(/symbolic links/);
  });

  it('prepares an image without writing through its links', async () => {
    await symlink(path.join(outside, 'file'), path.join(root, 'etc/hostname'));
    await symlink(path.join(outside, 'file'), path.join(root, 'etc/passwd'));
    await symlink('../../outside', path.join(root, 'tmp'));
    await writeFile(path.join(root, 'etc/group'), 'root:x:0:\n');

    const user = await prepareImageRootfs(root, new Date('2026-01-01T00:00:00Z'));
    expect(user).toMatchObject({ name: 'user', uid: 1000, gid: 1000, shell: '/bin/sh', added: true });
    expect(await readFile(path.join(outside, 'file'), 'utf8')).toBe('host\n');
    expect(await readFile(path.join(root, 'etc/hostname'), 'utf8')).toBe('wrenn\n');
    // The link to a host file read as a missing file inside the image: a passwd of its own.
    expect(await readFile(path.join(root, 'etc/passwd'), 'utf8')).toBe(
      'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n',
    );
    expect(await readFile(path.join(root, 'etc/group'), 'utf8')).toBe('root:x:0:\nuser:x:1000:\n');
    const tmp = await lstat(path.join(root, 'tmp'));
    expect(tmp.isDirectory()).toBe(true);
    expect(tmp.mode & 0o7777).toBe(0o1777);
    for (const p of ['opt/wrenn', 'proc', 'dev', 'sys', 'root'])
      expect((await stat(path.join(root, p))).isDirectory()).toBe(true);
    for (const p of ['etc/resolv.conf', 'etc/hosts'])
      expect((await lstat(path.join(root, p))).isFile()).toBe(true);
    const home = await stat(path.join(root, 'home/user'));
    expect([home.uid, home.gid, home.mode & 0o777]).toEqual([1000, 1000, 0o750]);
  });

  it('keeps an image that already has user, and its shadow file, as they were', async () => {
    await mkdir(path.join(root, 'bin'));
    await writeFile(path.join(root, 'bin/bash'), '', { mode: 0o755 });
    await writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/bash\n');
    await writeFile(path.join(root, 'etc/group'), 'root:x:0:\n');
    await writeFile(path.join(root, 'etc/shadow'), 'root:*:1::::::\n', { mode: 0o640 });
    await symlink('/etc/shadow', path.join(root, 'etc/gshadow'));
    const user = await prepareImageRootfs(root);
    expect(user.shell).toBe('/bin/bash');
    const shadow = path.join(root, 'etc/shadow');
    expect((await readFile(shadow, 'utf8')).split('\n')[1]).toMatch(/^user:!:\d+:0:99999:7:::$/);
    expect((await stat(shadow)).mode & 0o777).toBe(0o640);
    // A link inside the image is read through (inside it), then replaced by a file of its own.
    expect((await lstat(path.join(root, 'etc/gshadow'))).isFile()).toBe(true);
    const again = await prepareImageRootfs(root);
    expect(again.added).toBe(false);
    expect(await readlink(path.join(root, 'etc')).catch(() => 'not a link')).toBe('not a link');
  });
});
