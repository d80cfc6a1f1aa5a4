/** One line of /etc/passwd. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** One line of /etc/group. */
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

// We read the files ourselves instead of asking NSS: envd is one bundled file without native
// addons, and inside a sandbox the files are the only user database there is.

export function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length < 7) continue;
    const [name, , uidText, gidText, , home, shell] = fields as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const uid = parseId(uidText);
    const gid = parseId(gidText);
    if (name === '' || uid === undefined || gid === undefined) continue;
    entries.push({ name, uid, gid, home, shell });
  }
  return entries;
}

export function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length < 4) continue;
    const [name, , gidText, memberText] = fields as [string, string, string, string];
    const gid = parseId(gidText);
    if (name === '' || gid === undefined) continue;
    const members = memberText
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m !== '');
    entries.push({ name, gid, members });
  }
  return entries;
}

function parseId(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const id = Number(text);
  return Number.isSafeInteger(id) && id <= 0xffffffff ? id : undefined;
}
