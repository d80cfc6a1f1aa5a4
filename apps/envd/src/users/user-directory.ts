import { statSync, type BigIntStats } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseGroup, parsePasswd, type GroupEntry, type PasswdEntry } from './passwd.js';

/** A Linux account as envd runs things for it. */
export interface LinuxUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
  /** Supplementary groups: the primary gid plus every group that lists the user as a member. */
  groups: number[];
}

/** Names of owners and groups, for turning stat() ids into the strings EntryInfo carries. */
export interface IdNames {
  userName(uid: number): string;
  groupName(gid: number): string;
}

export interface UserDirectoryOptions {
  passwdPath?: string;
  groupPath?: string;
}

/**
 * The user database of the sandbox. Every lookup sees the files as they are now (templates add
 * users at build time and commands may run `useradd` later), but they are parsed again only when
 * they changed: a `stat` of each says so (see `CachedFile`). Every process start looks its user up,
 * and reading both files each time cost 2.5–5 ms of a 20 ms `Process.Start` inside gVisor.
 */
export class UserDirectory {
  private readonly passwd: CachedFile<PasswdEntry[]>;
  private readonly groups: CachedFile<GroupEntry[]>;

  constructor(opts: UserDirectoryOptions = {}) {
    this.passwd = new CachedFile(opts.passwdPath ?? '/etc/passwd', parsePasswd);
    this.groups = new CachedFile(opts.groupPath ?? '/etc/group', parseGroup);
  }

  async lookup(name: string): Promise<LinuxUser | undefined> {
    const [passwd, groups] = await Promise.all([this.passwd.read(), this.groups.read()]);
    const entry = passwd.find((p) => p.name === name);
    if (!entry) return undefined;
    const supplementary = new Set<number>([entry.gid]);
    for (const g of groups) if (g.members.includes(name)) supplementary.add(g.gid);
    return { ...entry, groups: [...supplementary] };
  }

  async exists(name: string): Promise<boolean> {
    return (await this.passwd.read()).some((p) => p.name === name);
  }

  async idNames(): Promise<IdNames> {
    const [passwd, groups] = await Promise.all([this.passwd.read(), this.groups.read()]);
    const users = new Map<number, string>();
    for (const p of passwd) if (!users.has(p.uid)) users.set(p.uid, p.name);
    const groupNames = new Map<number, string>();
    for (const g of groups) if (!groupNames.has(g.gid)) groupNames.set(g.gid, g.name);
    return {
      userName: (uid) => users.get(uid) ?? String(uid),
      groupName: (gid) => groupNames.get(gid) ?? String(gid),
    };
  }
}

/**
 * A small file's parsed content, parsed again only when a `stat` says the file changed: another
 * inode (tools like `useradd` write a new file and rename it over the old one), size, or
 * modification or change time in nanoseconds. The stat is synchronous on purpose: it is one system
 * call on the sandbox's own root filesystem, where an asynchronous one costs a thread-pool round
 * trip, which inside gVisor is most of the price. A missing file reads as empty.
 */
class CachedFile<T> {
  private cached: { version: string; value: T } | undefined;

  constructor(
    private readonly path: string,
    private readonly parse: (text: string) => T,
  ) {}

  async read(): Promise<T> {
    const version = fileVersion(this.path);
    if (version !== undefined && this.cached?.version === version) return this.cached.value;
    const value = this.parse(await readOptional(this.path));
    // Changed again while it was read: the next read looks again (the stat above is the older one).
    this.cached = version === undefined ? undefined : { version, value };
    return value;
  }
}

/** What identifies this content of the file; undefined when it cannot be told (never cached). */
function fileVersion(path: string): string | undefined {
  let st: BigIntStats | undefined;
  try {
    st = statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined; // not stat-able (permissions, a path component that is a file): read() says why
  }
  return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : 'missing';
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
