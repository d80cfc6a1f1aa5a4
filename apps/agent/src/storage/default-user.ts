/**
 * The account files of an image with the sandbox's default user added: `user` (E2B's default), uid
 * and gid 1000 when free, else the next free id from 1000 (ubuntu:24.04 has `ubuntu` at 1000), home
 * /home/user. Pure text in, text out: images without `useradd` (busybox, distroless) get the same.
 */
export interface AccountFiles {
  passwd: string;
  group: string;
  /** Only edited when the image has one. */
  shadow?: string;
  gshadow?: string;
}

export interface DefaultUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
  /** False when the image already had the user (then nothing was changed). */
  added: boolean;
}

export const DEFAULT_USER = 'user';
const FIRST_ID = 1000;

export function addDefaultUser(
  files: AccountFiles,
  opts: { shell: string; now: Date },
): { files: AccountFiles; user: DefaultUser } {
  const passwd = entries(files.passwd);
  const existing = passwd.find((f) => f[0] === DEFAULT_USER);
  if (existing) {
    return {
      files,
      user: {
        name: DEFAULT_USER,
        uid: Number(existing[2]),
        gid: Number(existing[3]),
        home: existing[5] ?? `/home/${DEFAULT_USER}`,
        shell: existing[6] ?? opts.shell,
        added: false,
      },
    };
  }
  const groups = entries(files.group);
  const usedUids = new Set(passwd.map((f) => Number(f[2])));
  const usedGids = new Set(groups.map((f) => Number(f[2])));
  const uid = firstFree(usedUids);
  const ownGroup = groups.find((f) => f[0] === DEFAULT_USER);
  const gid = ownGroup ? Number(ownGroup[2]) : usedGids.has(uid) ? firstFree(usedGids) : uid;
  const home = `/home/${DEFAULT_USER}`;
  const days = Math.floor(opts.now.getTime() / 86_400_000);
  const out: AccountFiles = {
    passwd: appendLine(files.passwd, `${DEFAULT_USER}:x:${uid}:${gid}::${home}:${opts.shell}`),
    group: ownGroup ? files.group : appendLine(files.group, `${DEFAULT_USER}:x:${gid}:`),
  };
  // Locked password ('!'), as useradd leaves it: the user is entered by envd, never by a login.
  if (files.shadow !== undefined)
    out.shadow = hasEntry(files.shadow, DEFAULT_USER)
      ? files.shadow
      : appendLine(files.shadow, `${DEFAULT_USER}:!:${days}:0:99999:7:::`);
  if (files.gshadow !== undefined)
    out.gshadow =
      ownGroup || hasEntry(files.gshadow, DEFAULT_USER)
        ? files.gshadow
        : appendLine(files.gshadow, `${DEFAULT_USER}:!::`);
  return { files: out, user: { name: DEFAULT_USER, uid, gid, home, shell: opts.shell, added: true } };
}

/** The minimal account files of an image that has none (a `scratch` image). */
export const EMPTY_ACCOUNTS: AccountFiles = {
  passwd: 'root:x:0:0:root:/root:/bin/sh\n',
  group: 'root:x:0:\n',
};

function entries(text: string): string[][] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2] ?? ''));
}

function hasEntry(text: string, name: string): boolean {
  return text.split('\n').some((line) => line.split(':')[0] === name);
}

function firstFree(used: Set<number>): number {
  let id = FIRST_ID;
  while (used.has(id)) id++;
  return id;
}

function appendLine(text: string, line: string): string {
  return `${text === '' || text.endsWith('\n') ? text : `${text}\n`}${line}\n`;
}
