import { describe, expect, it } from 'vitest';
import { SlotAllocator } from './slot-allocator.js';
import { slotAddresses, slotCapacity } from './addresses.js';
import { ipv4ToInt } from '../config.js';

describe('SlotAllocator', () => {
  it('hands out the lowest free index and reuses released ones', () => {
    const slots = new SlotAllocator(3);
    expect([slots.allocate(), slots.allocate(), slots.allocate()]).toEqual([1, 2, 3]);
    slots.release(2);
    expect(slots.allocate()).toBe(2);
    expect(slots.inUse).toBe(3);
  });

  it('refuses with ResourceExhausted when full', () => {
    const slots = new SlotAllocator(1);
    slots.allocate();
    expect(() => slots.allocate()).toThrow(/all 1 network slots are in use/);
  });
});

describe('slotAddresses', () => {
  it('gives each slot its own /30 with distinct host and slot addresses', () => {
    const base = ipv4ToInt('10.12.0.0');
    const a = slotAddresses(1, base);
    const b = slotAddresses(64, base);
    expect(a).toMatchObject({
      hostIp: '10.12.0.5',
      slotIp: '10.12.0.6',
      netnsName: 'wrenn-1',
      hostInterface: 'wrn-h-1',
    });
    expect(b).toMatchObject({ hostIp: '10.12.1.1', slotIp: '10.12.1.2' });
    // Fixed, distinct MACs per slot and side (locally administered).
    expect(a).toMatchObject({ hostMac: '02:77:68:00:00:01', slotMac: '02:77:73:00:00:01' });
    expect(slotAddresses(16383, base).slotMac).toBe('02:77:73:00:3f:ff');
    expect(slotCapacity(16)).toBe(16383);
  });
});
