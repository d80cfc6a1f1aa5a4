import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filesystem as fspb } from '@wrenn/contracts';
import { silentLogger } from '@wrenn/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserDirectory } from '../users/user-directory.js';
import { DirWatcher } from './dir-watcher.js';

let dir: string;
let watcher: DirWatcher | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envd-watch-'));
});

afterEach(async () => {
  watcher?.close();
  await rm(dir, { recursive: true, force: true });
});

async function watch(batchMs: number): Promise<fspb.FilesystemEvent[]> {
  const events: fspb.FilesystemEvent[] = [];
  const users = new UserDirectory();
  watcher = await DirWatcher.start({
    root: dir,
    recursive: false,
    includeEntry: false,
    idNames: () => users.idNames(),
    onEvent: (e) => events.push(e),
    logger: silentLogger(),
    batchMs,
  });
  return events;
}

const T = fspb.EventType;
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DirWatcher', () => {
  it('collapses a burst of writes to one file into one WRITE', async () => {
    await writeFile(join(dir, 'log.txt'), 'start\n');
    const events = await watch(300);
    for (let i = 0; i < 20; i++) await appendFile(join(dir, 'log.txt'), `line ${i}\n`);
    await settle(700);
    expect(events.map((e) => [e.name, e.type])).toEqual([['log.txt', T.WRITE]]);
  });

  it('reports nothing for a file created and deleted within one batch', async () => {
    const events = await watch(300);
    await writeFile(join(dir, 'tmp.txt'), 'x');
    await rm(join(dir, 'tmp.txt'));
    await writeFile(join(dir, 'kept.txt'), 'y');
    await settle(700);
    expect(events.map((e) => [e.name, e.type])).toEqual([
      ['kept.txt', T.CREATE],
      ['kept.txt', T.WRITE],
    ]);
  });
});
