import { failedPrecondition, notFound } from '@wrenn/core';
import type { EnvdClient } from './envd-client.js';
import type { SandboxInfo, SandboxRecord } from './record.js';
import { assertRunning } from './state.js';

/**
 * The sandboxes of this host by id, and the rule that operations changing one sandbox's state run
 * one at a time, in order of arrival.
 */
export class SandboxRegistry {
  private readonly sandboxes = new Map<string, SandboxRecord>();
  /** Creates restoring from each snapshot right now: a snapshot in use cannot be deleted. */
  private readonly snapshotUsers = new Map<string, number>();

  get size(): number {
    return this.sandboxes.size;
  }

  has(id: string): boolean {
    return this.sandboxes.has(id);
  }

  add(record: SandboxRecord): void {
    this.sandboxes.set(record.info.id, record);
  }

  remove(id: string): void {
    this.sandboxes.delete(id);
  }

  /** The record, or undefined; for callers that may race a destroy. */
  lookup(id: string): SandboxRecord | undefined {
    return this.sandboxes.get(id);
  }

  find(id: string): SandboxRecord {
    const record = this.sandboxes.get(id);
    if (!record) throw notFound('sandbox', id);
    return record;
  }

  records(): SandboxRecord[] {
    return [...this.sandboxes.values()];
  }

  get(id: string): SandboxInfo {
    return { ...this.find(id).info };
  }

  list(): SandboxInfo[] {
    return this.records().map((r) => ({ ...r.info }));
  }

  /** Runs `fn` after every operation queued on the sandbox before it, whether they failed or not. */
  serially<T>(record: SandboxRecord, fn: () => Promise<T>): Promise<T> {
    const run = record.queue.then(fn, fn);
    record.queue = run.catch(() => undefined);
    return run;
  }

  async withSnapshotInUse<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.snapshotUsers.set(name, (this.snapshotUsers.get(name) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      this.snapshotUsers.set(name, (this.snapshotUsers.get(name) ?? 1) - 1);
    }
  }

  snapshotInUse(name: string): boolean {
    return (this.snapshotUsers.get(name) ?? 0) > 0;
  }

  /**
   * The envd connection of a running sandbox for one call, and a signal that aborts when the sandbox
   * stops. The call counts as activity until `done`.
   */
  connection(id: string): { envd: EnvdClient; stopped: AbortSignal; done: () => void } {
    const record = this.find(id);
    assertRunning(record, 'use');
    const envd = record.envd;
    if (!envd) throw failedPrecondition(`sandbox ${id} is not running`);
    record.activeCalls++;
    touch(record);
    let finished = false;
    return {
      envd,
      stopped: record.lifetime.signal,
      done: () => {
        if (finished) return;
        finished = true;
        record.activeCalls--;
        touch(record);
      },
    };
  }
}

/** Activity: it resets the inactivity timer. */
export function touch(record: SandboxRecord): void {
  record.lastActive = Date.now();
  record.info.lastActiveAt = new Date(record.lastActive);
}
