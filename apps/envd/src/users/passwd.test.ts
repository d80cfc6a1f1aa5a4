import { appendFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usernameFromBasicAuth } from './basic-auth.js';
import { parseGroup, parsePasswd } from './passwd.js';
import { UserDirectory } from './user-directory.js';

const passwd = [
  'root:x:0:0:root:/root:/bin/bash',
  '# a comment',
  'user:x:1000:1000:User,,,:/home/user:/bin/bash',
  'broken:x:notanumber:1:x:/nowhere:/bin/sh',
  'short:x:1',
  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  '',
].join('\n');

const group = [
  'root:x:0:',
  'sudo:x:27:user,alice',
  'docker:x:999: user ',
  'user:x:1000:',
  'nogroup:x:65534:',
].join('\n');

describe('parsePasswd', () => {
  it('keeps well-formed lines and skips comments and broken ones', () => {
    const entries = parsePasswd(passwd);
    expect(entries.map((e) => e.name)).toEqual(['root', 'user', 'nobody']);
    expect(entries[1]).toEqual({
      name: 'user',
      uid: 1000,
      gid: 1000,
      home: '/home/user',
      shell: '/bin/bash',
    });
  });
});

describe('parseGroup', () => {
  it('parses member lists', () => {
    const entries = parseGroup(group);
    expect(entries.find((g) => g.name === 'sudo')?.members).toEqual(['user', 'alice']);
    expect(entries.find((g) => g.name === 'docker')?.members).toEqual(['user']);
    expect(entries.find((g) => g.name === 'root')?.members).toEqual([]);
  });
});

describe('UserDirectory', () => {
  let dir: string;
  let users: UserDirectory;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envd-passwd-'));
    await writeFile(join(dir, 'passwd'), passwd);
    await writeFile(join(dir, 'group'), group);
    users = new UserDirectory({ passwdPath: join(dir, 'passwd'), groupPath: join(dir, 'group') });
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives a user the primary group and every group listing them', async () => {
    const user = await users.lookup('user');
    expect(user?.uid).toBe(1000);
    expect(user?.groups.sort((a, b) => a - b)).toEqual([27, 999, 1000]);
  });

  it('returns undefined for an unknown user', async () => {
    expect(await users.lookup('ghost')).toBeUndefined();
  });

  it('names ids, falling back to the number', async () => {
    const names = await users.idNames();
    expect(names.userName(1000)).toBe('user');
    expect(names.groupName(27)).toBe('sudo');
    expect(names.userName(4242)).toBe('4242');
  });

  // The files are parsed once and kept while a stat says they are unchanged; every change shows.
  it('sees users added, changed and removed after an earlier lookup, however the file was written', async () => {
    const files = await mkdtemp(join(tmpdir(), 'envd-passwd-changes-'));
    try {
      const passwdPath = join(files, 'passwd');
      const groupPath = join(files, 'group');
      await writeFile(passwdPath, passwd);
      await writeFile(groupPath, group);
      const changing = new UserDirectory({ passwdPath, groupPath });
      expect(await changing.lookup('carol')).toBeUndefined();

      // In place, as `echo >> /etc/passwd` does (same inode).
      await appendFile(passwdPath, 'carol:x:1002:1002::/home/carol:/bin/sh\n');
      expect((await changing.lookup('carol'))?.uid).toBe(1002);

      // A new file renamed over the old one, as useradd does; the group file too.
      await writeFile(`${passwdPath}+`, passwd.replace('user:x:1000:', 'user:x:1500:'));
      await rename(`${passwdPath}+`, passwdPath);
      await writeFile(`${groupPath}+`, `${group}\ncarols:x:3000:user\n`);
      await rename(`${groupPath}+`, groupPath);
      const user = await changing.lookup('user');
      expect(user?.uid).toBe(1500);
      expect(user?.groups).toContain(3000);
      expect(await changing.lookup('carol')).toBeUndefined();

      await rm(passwdPath);
      expect(await changing.lookup('user')).toBeUndefined();
      expect(await changing.exists('root')).toBe(false);
    } finally {
      await rm(files, { recursive: true, force: true });
    }
  });
});

describe('usernameFromBasicAuth', () => {
  it('takes the username of a Basic header with an empty password', () => {
    expect(usernameFromBasicAuth(`Basic ${Buffer.from('user:').toString('base64')}`)).toBe('user');
    expect(usernameFromBasicAuth(`basic ${Buffer.from('root:pw').toString('base64')}`)).toBe('root');
  });

  it('ignores missing, empty and non-Basic headers', () => {
    expect(usernameFromBasicAuth(undefined)).toBeUndefined();
    expect(usernameFromBasicAuth(`Basic ${Buffer.from(':').toString('base64')}`)).toBeUndefined();
    expect(usernameFromBasicAuth('Bearer abc')).toBeUndefined();
  });
});
