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
 * The user database of the sandbox. It re-reads the files on every lookup: templates add users at
 * build time and commands may run `useradd` later, and the files are small.
 */
export class UserDirectory {
  private readonly passwdPath: string;
  private readonly groupPath: string;

  constructor(opts: UserDirectoryOptions = {}) {
    this.passwdPath = opts.passwdPath ?? '/etc/passwd';
    this.groupPath = opts.groupPath ?? '/etc/group';
  }

  async lookup(name: string): Promise<LinuxUser | undefined> {
    const [passwd, groups] = await Promise.all([this.readPasswd(), this.readGroups()]);
    const entry = passwd.find((p) => p.name === name);
    if (!entry) return undefined;
    const supplementary = new Set<number>([entry.gid]);
    for (const g of groups) if (g.members.includes(name)) supplementary.add(g.gid);
    return { ...entry, groups: [...supplementary] };
  }

  async exists(name: string): Promise<boolean> {
    return (await this.readPasswd()).some((p) => p.name === name);
  }

  async idNames(): Promise<IdNames> {
    const [passwd, groups] = await Promise.all([this.readPasswd(), this.readGroups()]);
    const users = new Map<number, string>();
    for (const p of passwd) if (!users.has(p.uid)) users.set(p.uid, p.name);
    const groupNames = new Map<number, string>();
    for (const g of groups) if (!groupNames.has(g.gid)) groupNames.set(g.gid, g.name);
    return {
      userName: (uid) => users.get(uid) ?? String(uid),
      groupName: (gid) => groupNames.get(gid) ?? String(gid),
    };
  }

  private async readPasswd(): Promise<PasswdEntry[]> {
    return parsePasswd(await readOptional(this.passwdPath));
  }

  private async readGroups(): Promise<GroupEntry[]> {
    return parseGroup(await readOptional(this.groupPath));
  }
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
