import { resourceExhausted } from '@wrenn/core';

/** Hands out slot indexes 1..capacity, lowest free first, so slot numbers stay small and readable. */
export class SlotAllocator {
  private readonly used = new Set<number>();

  constructor(private readonly capacity: number) {}

  allocate(): number {
    for (let i = 1; i <= this.capacity; i++) {
      if (!this.used.has(i)) {
        this.used.add(i);
        return i;
      }
    }
    throw resourceExhausted(`all ${this.capacity} network slots are in use`);
  }

  release(index: number): void {
    this.used.delete(index);
  }

  get inUse(): number {
    return this.used.size;
  }
}
