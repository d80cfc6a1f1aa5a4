import { errorMessage, type Logger } from '@wrenn/core';
import type { NetworkSlot } from './addresses.js';

export interface PreparedSlotsParts {
  /** A new slot's addresses; throws when every index is in use. */
  allocate: () => NetworkSlot;
  /** Builds the slot's namespace, links and base rules (what `SlotNetwork.prepare` does). */
  prepare: (slot: NetworkSlot) => Promise<void>;
  /** Removes what `prepare` built and frees the index. */
  release: (slot: NetworkSlot) => Promise<void>;
  /** Whether a start is waiting or just ran: a refill's process starts would slow it. */
  busy: () => boolean;
}

/**
 * Network slots built ahead of need. A slot's namespace, veth pair, addresses and base rules depend
 * on its index alone, and building them takes five process starts (~70 ms on two cores, side by side
 * with the disk's mounts): every create, resume and restore pays it. A slot taken from here costs
 * nothing; the sandbox's own egress policy and the final addresses go on after (`activate`), as for
 * a slot built on the spot. Refills run one slot at a time and only when no start is under way.
 * Nothing here belongs to a sandbox: `stop` removes them, and an agent that died leaves them to the
 * next one's janitor (they carry this instance's names).
 */
export class PreparedSlots {
  private readonly ready: NetworkSlot[] = [];
  private refilling: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly parts: PreparedSlotsParts,
    /** How many to keep ready (`WRENN_PREPARED_SLOTS`; 0: none, every start builds its own). */
    readonly size: number,
    private readonly logger: Logger,
  ) {}

  /** A ready slot, or undefined: the caller builds one. */
  take(): NetworkSlot | undefined {
    return this.ready.shift();
  }

  get readyCount(): number {
    return this.ready.length;
  }

  /** Builds one missing slot, if one is missing and the host is quiet. */
  refillOnce(): Promise<void> {
    if (this.stopped || this.refilling || this.ready.length >= this.size || this.parts.busy())
      return Promise.resolve();
    this.refilling = this.buildOne().finally(() => (this.refilling = undefined));
    return this.refilling;
  }

  private async buildOne(): Promise<void> {
    let slot: NetworkSlot;
    try {
      slot = this.parts.allocate();
    } catch {
      // Every index is a sandbox's: nothing to build ahead.
      return;
    }
    try {
      await this.parts.prepare(slot);
    } catch (err) {
      this.logger.warn(
        { slot: slot.index, err: errorMessage(err) },
        'could not prepare a network slot ahead',
      );
      await this.release(slot);
      return;
    }
    if (this.stopped) await this.release(slot);
    else this.ready.push(slot);
  }

  /** No more refills; the ready slots are removed (a refill in flight finishes first). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.refilling;
    await Promise.all(this.ready.splice(0).map((slot) => this.release(slot)));
  }

  private async release(slot: NetworkSlot): Promise<void> {
    await this.parts.release(slot).catch((err: unknown) => {
      this.logger.error(
        { slot: slot.index, err: errorMessage(err) },
        'could not remove a prepared network slot',
      );
    });
  }
}
