import { chmod, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@connectrpc/connect';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { filesystem as fspb } from '@wrenn/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth, startEnvd, type EnvdFixture } from '../testing/envd-fixture.js';
import { codeOf } from '../testing/process-events.js';

let envd: EnvdFixture;

beforeAll(async () => {
  envd = await startEnvd();
});

afterAll(async () => {
  await envd.close();
});

describe('Stat', () => {
  it('describes a file', async () => {
    const path = join(envd.dir, 'stat.txt');
    await writeFile(path, 'twelve bytes');
    await chmod(path, 0o640);
    const { entry } = await envd.filesystem.stat({ path });
    expect(entry).toMatchObject({
      name: 'stat.txt',
      type: fspb.FileType.FILE,
      path,
      size: 12n,
      mode: 0o640,
      permissions: '-rw-r-----',
      owner: 'root',
      group: 'root',
    });
    expect(entry?.symlinkTarget).toBeUndefined();
    expect(Math.abs(timestampMs(entry!.modifiedTime!) - Date.now())).toBeLessThan(60_000);
  });

  it('reports a symlink with its target’s type and the link’s own permissions', async () => {
    const target = join(envd.dir, 'target-dir');
    await mkdir(target);
    const link = join(envd.dir, 'link');
    await symlink(target, link);
    const { entry } = await envd.filesystem.stat({ path: link });
    expect(entry?.type).toBe(fspb.FileType.DIRECTORY);
    expect(entry?.symlinkTarget).toBe(target);
    expect(entry?.permissions).toBe('Lrwxrwxrwx');
  });

  it('answers not_found for a missing path', async () => {
    expect(await codeOf(envd.filesystem.stat({ path: join(envd.dir, 'missing') }))).toBe(Code.NotFound);
  });

  // Found by fuzz.int.test.ts: Node's fs throws a TypeError for it, which was `internal`.
  it('answers invalid_argument for a path with a NUL byte', async () => {
    expect(await codeOf(envd.filesystem.stat({ path: join(envd.dir, 'a\0b') }))).toBe(Code.InvalidArgument);
  });
});

describe('MakeDir, Move, Remove', () => {
  it('creates parents, and reports already_exists the second time', async () => {
    const path = join(envd.dir, 'a', 'b', 'c');
    const { entry } = await envd.filesystem.makeDir({ path });
    expect(entry).toMatchObject({ name: 'c', path, type: fspb.FileType.DIRECTORY });
    expect(entry?.permissions).toMatch(/^drwx/);
    expect(await codeOf(envd.filesystem.makeDir({ path }))).toBe(Code.AlreadyExists);
    await writeFile(join(envd.dir, 'plain'), '');
    expect(await codeOf(envd.filesystem.makeDir({ path: join(envd.dir, 'plain') }))).toBe(
      Code.InvalidArgument,
    );
  });

  it('gives new directories to the requesting user', async () => {
    const asNobody = envd.clients(basicAuth('nobody'));
    const path = join(envd.dir, 'owned', 'by', 'nobody');
    const { entry } = await asNobody.filesystem.makeDir({ path });
    expect(entry?.owner).toBe('nobody');
    const parent = await envd.filesystem.stat({ path: join(envd.dir, 'owned') });
    expect(parent.entry?.owner).toBe('nobody');
  });

  it('resolves relative paths against the user’s home', async () => {
    const name = `envd-rel-${Date.now()}`;
    try {
      const { entry } = await envd.filesystem.makeDir({ path: name });
      expect(entry?.path).toBe(join(homedir(), name));
    } finally {
      await rm(join(homedir(), name), { recursive: true, force: true });
    }
  });

  it('moves into a new directory and removes recursively; removing nothing is fine', async () => {
    const src = join(envd.dir, 'move-me.txt');
    await writeFile(src, 'data');
    const dst = join(envd.dir, 'moved', 'deep', 'here.txt');
    const { entry } = await envd.filesystem.move({ source: src, destination: dst });
    expect(entry).toMatchObject({ name: 'here.txt', path: dst, size: 4n });
    expect(await readFile(dst, 'utf8')).toBe('data');
    expect(await codeOf(envd.filesystem.stat({ path: src }))).toBe(Code.NotFound);
    expect(await codeOf(envd.filesystem.move({ source: src, destination: dst }))).toBe(Code.NotFound);

    await envd.filesystem.remove({ path: join(envd.dir, 'moved') });
    expect(await codeOf(envd.filesystem.stat({ path: join(envd.dir, 'moved') }))).toBe(Code.NotFound);
    await envd.filesystem.remove({ path: join(envd.dir, 'moved') });
  });
});

describe('ListDir', () => {
  it('lists to the requested depth in name order', async () => {
    const root = join(envd.dir, 'tree');
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    await writeFile(join(root, 'a', 'b', 'c.txt'), 'c');
    await writeFile(join(root, 'a', 'd.txt'), 'dd');
    await writeFile(join(root, 'z.txt'), 'zzz');

    const names = async (depth: number) =>
      (await envd.filesystem.listDir({ path: root, depth })).entries.map((e) =>
        e.path.slice(root.length + 1),
      );
    expect(await names(0)).toEqual(['a', 'z.txt']);
    expect(await names(1)).toEqual(['a', 'z.txt']);
    expect(await names(2)).toEqual(['a', 'a/b', 'a/d.txt', 'z.txt']);
    expect(await names(3)).toEqual(['a', 'a/b', 'a/b/c.txt', 'a/d.txt', 'z.txt']);

    const { entries } = await envd.filesystem.listDir({ path: root, depth: 1 });
    expect(entries.find((e) => e.name === 'z.txt')).toMatchObject({ type: fspb.FileType.FILE, size: 3n });
    expect(entries.find((e) => e.name === 'a')).toMatchObject({ type: fspb.FileType.DIRECTORY });
  });

  it('rejects a file with invalid_argument and a missing path with not_found', async () => {
    await writeFile(join(envd.dir, 'not-a-dir'), '');
    expect(await codeOf(envd.filesystem.listDir({ path: join(envd.dir, 'not-a-dir') }))).toBe(
      Code.InvalidArgument,
    );
    expect(await codeOf(envd.filesystem.listDir({ path: join(envd.dir, 'nope') }))).toBe(Code.NotFound);
  });
});

type Seen = Array<{ name: string; type: fspb.EventType; entryName?: string }>;

async function watchUntil(
  req: { path: string; recursive?: boolean; includeEntry?: boolean },
  act: () => Promise<void>,
  done: (seen: Seen) => boolean,
): Promise<Seen> {
  const ac = new AbortController();
  const seen: Seen = [];
  const timer = setTimeout(() => ac.abort(), 10_000);
  const stream = envd.filesystem.watchDir(req, { signal: ac.signal });
  let first = true;
  try {
    for await (const res of stream) {
      if (first) {
        expect(res.event.case).toBe('start');
        first = false;
        await act();
        continue;
      }
      if (res.event.case === 'filesystem') {
        const e = res.event.value;
        seen.push({ name: e.name, type: e.type, entryName: e.entry?.name });
        if (done(seen)) break;
      }
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return seen;
}

const has = (seen: Seen, name: string, type: fspb.EventType) =>
  seen.some((e) => e.name === name && e.type === type);

describe('WatchDir', () => {
  it('reports create, write, chmod, rename and remove relative to the watched directory', async () => {
    const dir = join(envd.dir, 'watched');
    await mkdir(dir);
    await writeFile(join(dir, 'existing.txt'), 'old');
    const T = fspb.EventType;
    const seen = await watchUntil(
      { path: dir },
      async () => {
        await writeFile(join(dir, 'new.txt'), 'hello');
        await pause();
        await writeFile(join(dir, 'existing.txt'), 'changed content');
        await pause();
        await chmod(join(dir, 'existing.txt'), 0o600);
        await pause();
        await rename(join(dir, 'new.txt'), join(dir, 'renamed.txt'));
        await pause();
        await rm(join(dir, 'existing.txt'));
        await mkdir(join(dir, 'sub'));
      },
      (s) => has(s, 'existing.txt', T.REMOVE) && has(s, 'sub', T.CREATE),
    );
    expect(has(seen, 'new.txt', T.CREATE)).toBe(true);
    expect(has(seen, 'new.txt', T.WRITE)).toBe(true);
    expect(has(seen, 'existing.txt', T.WRITE)).toBe(true);
    expect(has(seen, 'existing.txt', T.CHMOD)).toBe(true);
    expect(has(seen, 'new.txt', T.RENAME)).toBe(true);
    expect(has(seen, 'renamed.txt', T.CREATE)).toBe(true);
    expect(has(seen, 'existing.txt', T.REMOVE)).toBe(true);
    expect(has(seen, 'sub', T.CREATE)).toBe(true);
  });

  it('follows subdirectories when recursive and includes entries on request', async () => {
    const dir = join(envd.dir, 'watched-rec');
    await mkdir(join(dir, 'pre'), { recursive: true });
    const T = fspb.EventType;
    const seen = await watchUntil(
      { path: dir, recursive: true, includeEntry: true },
      async () => {
        await writeFile(join(dir, 'pre', 'a.txt'), 'a');
        await mkdir(join(dir, 'later'));
        await pause();
        await writeFile(join(dir, 'later', 'b.txt'), 'b');
      },
      (s) => has(s, 'pre/a.txt', T.CREATE) && has(s, 'later/b.txt', T.CREATE),
    );
    expect(seen.find((e) => e.name === 'pre/a.txt' && e.type === T.CREATE)?.entryName).toBe('a.txt');
    expect(has(seen, 'later', T.CREATE)).toBe(true);
  });

  it('does not report subdirectories when not recursive', async () => {
    const dir = join(envd.dir, 'watched-flat');
    await mkdir(join(dir, 'inner'), { recursive: true });
    const T = fspb.EventType;
    const seen = await watchUntil(
      { path: dir },
      async () => {
        await writeFile(join(dir, 'inner', 'hidden.txt'), 'x');
        await pause();
        await writeFile(join(dir, 'top.txt'), 'x');
      },
      (s) => has(s, 'top.txt', T.CREATE),
    );
    expect(seen.some((e) => e.name.includes('hidden'))).toBe(false);
  });

  it('rejects a file and a missing path', async () => {
    await writeFile(join(envd.dir, 'watch-file'), '');
    const ac = new AbortController();
    const watchFile = async () => {
      for await (const _ of envd.filesystem.watchDir(
        { path: join(envd.dir, 'watch-file') },
        { signal: ac.signal },
      ))
        break;
    };
    expect(await codeOf(watchFile())).toBe(Code.InvalidArgument);
    const watchMissing = async () => {
      for await (const _ of envd.filesystem.watchDir({ path: join(envd.dir, 'nope') })) break;
    };
    expect(await codeOf(watchMissing())).toBe(Code.NotFound);
  });
});

describe('polling watchers', () => {
  it('collects events until asked, then forgets them; removed watchers are not_found', async () => {
    const dir = join(envd.dir, 'polled');
    await mkdir(dir);
    const { watcherId } = await envd.filesystem.createWatcher({ path: dir });
    expect(watcherId).not.toBe('');
    await writeFile(join(dir, 'one.txt'), '1');
    let events: fspb.FilesystemEvent[] = [];
    const deadline = Date.now() + 5000;
    while (!events.some((e) => e.name === 'one.txt') && Date.now() < deadline) {
      await pause();
      events = events.concat((await envd.filesystem.getWatcherEvents({ watcherId })).events);
    }
    expect(events.some((e) => e.name === 'one.txt' && e.type === fspb.EventType.CREATE)).toBe(true);
    await pause();
    expect((await envd.filesystem.getWatcherEvents({ watcherId })).events).toEqual([]);
    await envd.filesystem.removeWatcher({ watcherId });
    expect(await codeOf(envd.filesystem.getWatcherEvents({ watcherId }))).toBe(Code.NotFound);
  });
});

function pause(ms = 100): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
