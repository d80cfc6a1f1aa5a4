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

  /** Marks a slot taken that is already in use (an adopted sandbox's, at start). */
  reserve(index: number): void {
    if (index < 1 || index > this.capacity)
      throw new Error(`slot ${index} is out of range 1..${this.capacity}`);
    this.used.add(index);
  }

  release(index: number): void {
    this.used.delete(index);
  }

  get inUse(): number {
    return this.used.size;
  }
}
