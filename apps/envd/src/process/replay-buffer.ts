import { raceAbort } from '../stream/abort.js';
import { deferred } from '../stream/deferred.js';

interface Entry<T> {
  item: T;
  sizeBytes: number;
}

interface ReaderState {
  /** Sequence number of the next entry this reader will take. */
  next: number;
}

export interface ReplayBufferOptions {
  /** Bytes of entries kept; older entries are dropped once every live reader has passed them. */
  capBytes: number;
  /**
   * Called with true when the buffer is full and a live reader still needs its oldest entry: the
   * producer should stop (pause the child's output) until it is called with false.
   */
  onPressure?: (isFull: boolean) => void;
}

/**
 * An append-only log of output chunks with a byte cap, read by any number of cursors.
 *
 * - A reader that joins late starts at the oldest retained entry, so it replays what is still kept.
 * - Entries are dropped oldest first once the log exceeds the cap, but never one a live reader has
 *   not read yet: then the buffer reports pressure and the producer must pause. Live readers thus
 *   receive everything in order, and memory stays bounded by the cap plus one chunk in flight.
 * - Each reader is an async generator that only moves when its consumer asks for the next item, so a
 *   slow network client slows the producer instead of growing a queue.
 */
export class ReplayBuffer<T> {
  private entries: Entry<T>[] = [];
  /** Index in `entries` of the oldest retained entry (dropped ones are compacted away lazily). */
  private head = 0;
  /** Sequence number of entries[head]. */
  private firstSeq = 0;
  private retainedBytes = 0;
  private closed = false;
  private isFull = false;
  private readonly readers = new Set<ReaderState>();
  private changed = deferred();

  constructor(private readonly opts: ReplayBufferOptions) {}

  get sizeBytes(): number {
    return this.retainedBytes;
  }

  get readerCount(): number {
    return this.readers.size;
  }

  /** Sequence number the next appended entry gets (= total entries ever appended). */
  get endSeq(): number {
    return this.firstSeq + this.entries.length - this.head;
  }

  append(item: T, sizeBytes: number): void {
    if (this.closed) throw new Error('append after close');
    this.entries.push({ item, sizeBytes });
    this.retainedBytes += sizeBytes;
    this.trim();
    this.notify();
  }

  /** No more entries: readers finish once they have read everything retained. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.setFull(false);
    this.notify();
  }

  async *read(signal?: AbortSignal): AsyncGenerator<T, void, undefined> {
    const reader: ReaderState = { next: this.firstSeq };
    this.readers.add(reader);
    try {
      for (;;) {
        // Only possible for entries dropped before this reader existed.
        if (reader.next < this.firstSeq) reader.next = this.firstSeq;
        if (reader.next < this.endSeq) {
          const entry = this.entries[this.head + (reader.next - this.firstSeq)] as Entry<T>;
          reader.next++;
          this.trim();
          yield entry.item;
          continue;
        }
        if (this.closed) return;
        await raceAbort(this.changed.promise, signal);
      }
    } finally {
      this.readers.delete(reader);
      this.trim();
    }
  }

  private trim(): void {
    const slowest = this.slowestReader();
    while (this.retainedBytes > this.opts.capBytes && this.head < this.entries.length) {
      if (slowest !== undefined && slowest <= this.firstSeq) break;
      const dropped = this.entries[this.head] as Entry<T>;
      this.entries[this.head] = undefined as unknown as Entry<T>;
      this.head++;
      this.firstSeq++;
      this.retainedBytes -= dropped.sizeBytes;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    this.setFull(!this.closed && this.retainedBytes > this.opts.capBytes);
  }

  private slowestReader(): number | undefined {
    let min: number | undefined;
    for (const r of this.readers) if (min === undefined || r.next < min) min = r.next;
    return min;
  }

  private setFull(isFull: boolean): void {
    if (isFull === this.isFull) return;
    this.isFull = isFull;
    this.opts.onPressure?.(isFull);
  }

  private notify(): void {
    this.changed.resolve();
    this.changed = deferred();
  }
}
