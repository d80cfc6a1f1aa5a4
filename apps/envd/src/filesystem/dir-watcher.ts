import { watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { filesystem as fspb } from '@wrenn/contracts';
import type { Logger } from '@wrenn/core';
import type { IdNames } from '../users/user-directory.js';
import { entryInfo } from './entry-info.js';

export interface DirWatcherOptions {
  /** Absolute path of an existing directory. */
  root: string;
  recursive: boolean;
  includeEntry: boolean;
  idNames: () => Promise<IdNames>;
  onEvent: (event: fspb.FilesystemEvent) => void;
  logger: Logger;
  /** Raw notifications closer together than this are judged together (see flush). */
  batchMs?: number;
}

interface Snapshot {
  ino: bigint;
  mode: bigint;
  uid: bigint;
  gid: bigint;
  size: bigint;
  mtimeNs: bigint;
  isDir: boolean;
}

interface RawEvent {
  sawRename: boolean;
  sawChange: boolean;
}

const T = fspb.EventType;

/**
 * Watches a directory (optionally its whole tree) with fs.watch and reports E2B's event types.
 *
 * fs.watch only says "rename" or "change", so each batch of notifications is compared with the last
 * known state of the named entries (inode, mode, owner, size, mtime):
 * appeared → CREATE (+ WRITE when it already has content, CHMOD otherwise, as inotify would add);
 * vanished → RENAME when its inode reappeared under another name in the same batch (the new name
 * gets CREATE, like fsnotify), else REMOVE; "change" → CHMOD when mode or owner changed, else WRITE.
 * Repeated notifications for one name within a batch collapse into one event per type, and an entry
 * created and deleted within one batch reports nothing.
 *
 * Recursion uses one non-recursive watcher per directory, added as directories appear, because that
 * is what inotify offers and it keeps the snapshot and the watchers in step.
 */
export class DirWatcher {
  private readonly known = new Map<string, Snapshot>();
  private readonly watchers = new Map<string, FSWatcher>();
  private pending = new Map<string, RawEvent>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private isClosed = false;
  private readonly batchMs: number;

  private constructor(private readonly opts: DirWatcherOptions) {
    this.batchMs = opts.batchMs ?? 30;
  }

  /** Resolves once the watch is in place: every change after that is reported. */
  static async start(opts: DirWatcherOptions): Promise<DirWatcher> {
    const w = new DirWatcher(opts);
    try {
      await w.addDir('');
    } catch (err) {
      w.close();
      throw err;
    }
    return w;
  }

  close(): void {
    this.isClosed = true;
    clearTimeout(this.flushTimer);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  /** Watches relDir and records its entries (and, when recursive, its subtree) without events. */
  private async addDir(relDir: string): Promise<void> {
    if (this.isClosed || this.watchers.has(relDir)) return;
    const abs = join(this.opts.root, relDir);
    const watcher = watch(abs, { persistent: false }, (eventType, filename) => {
      if (filename === null) return;
      this.note(join(relDir, filename), eventType);
    });
    watcher.on('error', (err) => {
      // Typically the directory itself went away; its parent's watcher reports that.
      this.opts.logger.debug({ err, dir: abs }, 'directory watcher stopped');
      watcher.close();
      if (this.watchers.get(relDir) === watcher) this.watchers.delete(relDir);
    });
    this.watchers.set(relDir, watcher);
    let names: string[];
    try {
      names = await readdir(abs);
    } catch (err) {
      if (relDir === '') throw err;
      return;
    }
    for (const name of names) {
      const rel = join(relDir, name);
      const st = await lstatOrUndefined(join(this.opts.root, rel));
      if (!st) continue;
      this.known.set(rel, snapshot(st));
      if (this.opts.recursive && st.isDirectory()) await this.addDir(rel);
    }
  }

  private note(rel: string, eventType: string): void {
    if (this.isClosed) return;
    const raw = this.pending.get(rel) ?? { sawRename: false, sawChange: false };
    if (eventType === 'rename') raw.sawRename = true;
    else raw.sawChange = true;
    this.pending.set(rel, raw);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      const batch = this.pending;
      this.pending = new Map();
      // Batches are judged one after another so the snapshot moves forward in order.
      this.flushing = this.flushing
        .then(() => this.flush(batch))
        .catch((err: unknown) => {
          this.opts.logger.warn({ err }, 'watch batch failed');
        });
    }, this.batchMs);
  }

  private async flush(batch: Map<string, RawEvent>): Promise<void> {
    const now = new Map<string, BigIntStats | undefined>();
    for (const rel of batch.keys()) now.set(rel, await lstatOrUndefined(join(this.opts.root, rel)));
    const names = this.opts.includeEntry ? await this.opts.idNames() : undefined;

    // Entries that appeared in this batch, by identity: a vanished entry with the same identity was
    // renamed. The inode alone is not enough, a deleted file's inode is reused at once.
    const appeared = new Set<string>();
    for (const [rel, st] of now) {
      const prev = this.known.get(rel);
      if (st && (!prev || prev.ino !== st.ino)) appeared.add(identity(snapshot(st)));
    }

    for (const [rel, raw] of batch) {
      if (this.isClosed) return;
      const st = now.get(rel);
      const prev = this.known.get(rel);
      const types: fspb.EventType[] = [];
      if (st) {
        const next = snapshot(st);
        if (!prev || prev.ino !== next.ino) {
          types.push(T.CREATE);
          if (raw.sawChange) types.push(next.size > 0n ? T.WRITE : T.CHMOD);
          if (next.isDir && this.opts.recursive) await this.addDir(rel);
        } else if (raw.sawChange) {
          const attrsChanged = prev.mode !== next.mode || prev.uid !== next.uid || prev.gid !== next.gid;
          const contentChanged = prev.size !== next.size || prev.mtimeNs !== next.mtimeNs;
          if (attrsChanged) types.push(T.CHMOD);
          if (contentChanged || !attrsChanged) types.push(T.WRITE);
        }
        this.known.set(rel, next);
      } else if (prev) {
        types.push(appeared.has(identity(prev)) ? T.RENAME : T.REMOVE);
        this.forget(rel);
      }
      for (const type of types) {
        const event = create(fspb.FilesystemEventSchema, { name: rel, type });
        if (names && st && type !== T.REMOVE && type !== T.RENAME) {
          try {
            event.entry = await entryInfo(join(this.opts.root, rel), names);
          } catch {
            // Gone again already; the event still stands.
          }
        }
        this.opts.onEvent(event);
      }
    }
  }

  private forget(rel: string): void {
    this.known.delete(rel);
    const prefix = rel + '/';
    for (const key of this.known.keys()) if (key.startsWith(prefix)) this.known.delete(key);
    for (const [dir, watcher] of this.watchers) {
      if (dir === rel || dir.startsWith(prefix)) {
        watcher.close();
        this.watchers.delete(dir);
      }
    }
  }
}

/** What a rename keeps: the inode, its type, size and modification time. */
function identity(s: Snapshot): string {
  return `${s.ino}:${s.isDir}:${s.size}:${s.mtimeNs}`;
}

function snapshot(st: BigIntStats): Snapshot {
  return {
    ino: st.ino,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    mtimeNs: st.mtimeNs,
    isDir: st.isDirectory(),
  };
}

async function lstatOrUndefined(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch {
    return undefined;
  }
}
