import { raceAbort } from './abort.js';
import { deferred } from './deferred.js';

/**
 * A FIFO between a producer that must never block (a file watcher) and one reader. Bounded: past
 * `maxItems` the oldest items are dropped and counted, so a stalled reader costs fixed memory.
 */
export class EventQueue<T> {
  private items: T[] = [];
  private changed = deferred();
  private closed = false;
  droppedCount = 0;

  constructor(private readonly maxItems: number) {}

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    if (this.items.length > this.maxItems) {
      this.items.shift();
      this.droppedCount++;
    }
    this.notify();
  }

  /** Takes everything queued now (for polling readers). */
  drain(): T[] {
    const items = this.items;
    this.items = [];
    return items;
  }

  close(): void {
    this.closed = true;
    this.notify();
  }

  async *read(signal?: AbortSignal): AsyncGenerator<T, void, undefined> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.closed) return;
      await raceAbort(this.changed.promise, signal);
    }
  }

  private notify(): void {
    this.changed.resolve();
    this.changed = deferred();
  }
}
