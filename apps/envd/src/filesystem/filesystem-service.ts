import { cp, lstat, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { filesystem as fspb } from '@wrenn/contracts';
import { Code, ConnectError, randomId, type Logger } from '@wrenn/core';
import { EventQueue } from '../stream/event-queue.js';
import { keepaliveIntervalMs, withKeepalive } from '../stream/keepalive.js';
import type { RequestUsers } from '../users/request-user.js';
import type { IdNames, LinuxUser } from '../users/user-directory.js';
import { DirWatcher } from './dir-watcher.js';
import { entryInfo } from './entry-info.js';
import { fsError } from './fs-errors.js';
import { ensureDir, resolveUserPath } from './paths.js';

export interface FilesystemServiceDeps {
  users: RequestUsers;
  logger: Logger;
}

/** Events a watcher keeps for its reader before dropping the oldest. */
const maxQueuedEvents = 10_000;

interface PollingWatcher {
  watcher: DirWatcher;
  queue: EventQueue<fspb.FilesystemEvent>;
}

/** E2B's `filesystem.Filesystem` service. Runs as envd (root); new entries are given to the user. */
export function createFilesystemService(
  deps: FilesystemServiceDeps,
): ServiceImpl<typeof fspb.Filesystem> & { closeWatchers(): void } {
  const { users, logger } = deps;
  const pollingWatchers = new Map<string, PollingWatcher>();

  async function userAndPath(ctx: HandlerContext, path: string): Promise<[LinuxUser, string]> {
    const user = await users.fromHeaders(ctx.requestHeader);
    return [user, resolveUserPath(path, user)];
  }

  async function info(path: string, names?: IdNames): Promise<fspb.EntryInfo> {
    try {
      return await entryInfo(path, names ?? (await users.directory.idNames()));
    } catch (err) {
      throw fsError(err, `path '${path}'`);
    }
  }

  async function startWatcher(
    ctx: HandlerContext,
    req: { path: string; recursive: boolean; includeEntry: boolean },
    queue: EventQueue<fspb.FilesystemEvent>,
  ): Promise<DirWatcher> {
    const [, path] = await userAndPath(ctx, req.path);
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw fsError(err, `path '${path}'`);
    }
    if (!st.isDirectory()) throw new ConnectError(`path '${path}' is not a directory`, Code.InvalidArgument);
    try {
      return await DirWatcher.start({
        root: path,
        recursive: req.recursive,
        includeEntry: req.includeEntry,
        idNames: () => users.directory.idNames(),
        onEvent: (e) => queue.push(e),
        logger: logger.child({ watch: path }),
      });
    } catch (err) {
      throw fsError(err, `watching '${path}'`);
    }
  }

  return {
    async stat(req, ctx) {
      const [, path] = await userAndPath(ctx, req.path);
      return { entry: await info(path) };
    },

    async makeDir(req, ctx) {
      const [user, path] = await userAndPath(ctx, req.path);
      const existing = await lstat(path).catch(() => undefined);
      if (existing?.isDirectory())
        throw new ConnectError(`directory '${path}' already exists`, Code.AlreadyExists);
      if (existing)
        throw new ConnectError(`path '${path}' exists but is not a directory`, Code.InvalidArgument);
      try {
        await ensureDir(path, user);
      } catch (err) {
        throw fsError(err, `creating '${path}'`);
      }
      return { entry: await info(path) };
    },

    async move(req, ctx) {
      const [user, source] = await userAndPath(ctx, req.source);
      const destination = resolveUserPath(req.destination, user);
      try {
        await ensureDir(dirname(destination), user);
        await rename(source, destination).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EXDEV') throw err;
          await cp(source, destination, {
            recursive: true,
            preserveTimestamps: true,
            verbatimSymlinks: true,
          });
          await rm(source, { recursive: true, force: true });
        });
      } catch (err) {
        throw fsError(err, `moving '${source}' to '${destination}'`);
      }
      return { entry: await info(destination) };
    },

    async listDir(req, ctx) {
      const [, path] = await userAndPath(ctx, req.path);
      const depth = req.depth === 0 ? 1 : req.depth;
      let real: string;
      try {
        real = await realpath(path);
        if (!(await stat(real)).isDirectory()) {
          throw new ConnectError(`path '${path}' is not a directory`, Code.InvalidArgument);
        }
      } catch (err) {
        throw fsError(err, `path '${path}'`);
      }
      const names = await users.directory.idNames();
      const entries: fspb.EntryInfo[] = [];
      // Depth-first in name order like Go's filepath.WalkDir; symlinked directories are not entered.
      async function walk(dir: string, shownDir: string, level: number): Promise<void> {
        let children: string[];
        try {
          children = (await readdir(dir)).sort();
        } catch (err) {
          if (level === 1) throw fsError(err, `reading '${shownDir}'`);
          return;
        }
        for (const child of children) {
          let entry: fspb.EntryInfo;
          try {
            entry = await entryInfo(join(dir, child), names);
          } catch {
            continue; // Vanished while listing.
          }
          entry.path = join(shownDir, child);
          entries.push(entry);
          if (level < depth && entry.type === fspb.FileType.DIRECTORY && entry.symlinkTarget === undefined) {
            await walk(join(dir, child), entry.path, level + 1);
          }
        }
      }
      await walk(real, path, 1);
      return { entries };
    },

    async remove(req, ctx) {
      const [, path] = await userAndPath(ctx, req.path);
      try {
        await rm(path, { recursive: true, force: true });
      } catch (err) {
        throw fsError(err, `removing '${path}'`);
      }
      return {};
    },

    async *watchDir(req, ctx) {
      const queue = new EventQueue<fspb.FilesystemEvent>(maxQueuedEvents);
      const watcher = await startWatcher(ctx, req, queue);
      try {
        yield { event: { case: 'start', value: {} } };
        const events = withKeepalive<fspb.WatchDirResponse>(
          mapEvents(queue.read(ctx.signal)),
          () => create(fspb.WatchDirResponseSchema, { event: { case: 'keepalive', value: {} } }),
          keepaliveIntervalMs(ctx.requestHeader),
          ctx.signal,
        );
        for await (const event of events) yield event;
      } finally {
        watcher.close();
        queue.close();
        if (queue.droppedCount > 0) logger.warn({ dropped: queue.droppedCount }, 'watch events dropped');
      }
    },

    async createWatcher(req, ctx) {
      const queue = new EventQueue<fspb.FilesystemEvent>(maxQueuedEvents);
      const watcher = await startWatcher(ctx, req, queue);
      const watcherId = randomId();
      pollingWatchers.set(watcherId, { watcher, queue });
      return { watcherId };
    },

    getWatcherEvents(req) {
      const w = pollingWatchers.get(req.watcherId);
      if (!w) throw new ConnectError(`watcher '${req.watcherId}' not found`, Code.NotFound);
      return { events: w.queue.drain() };
    },

    removeWatcher(req) {
      const w = pollingWatchers.get(req.watcherId);
      if (!w) throw new ConnectError(`watcher '${req.watcherId}' not found`, Code.NotFound);
      w.watcher.close();
      w.queue.close();
      pollingWatchers.delete(req.watcherId);
      return {};
    },

    closeWatchers() {
      for (const w of pollingWatchers.values()) w.watcher.close();
      pollingWatchers.clear();
    },
  };
}

async function* mapEvents(
  events: AsyncIterable<fspb.FilesystemEvent>,
): AsyncGenerator<fspb.WatchDirResponse, void, undefined> {
  for await (const e of events) {
    yield create(fspb.WatchDirResponseSchema, { event: { case: 'filesystem', value: e } });
  }
}
