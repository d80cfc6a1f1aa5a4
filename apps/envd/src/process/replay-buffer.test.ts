import { describe, expect, it } from 'vitest';
import { ReplayBuffer } from './replay-buffer.js';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('ReplayBuffer', () => {
  it('replays everything retained to a late reader, then follows live appends', async () => {
    const buf = new ReplayBuffer<number>({ capBytes: 1000 });
    buf.append(1, 10);
    buf.append(2, 10);
    const reader = collect(buf.read());
    buf.append(3, 10);
    await Promise.resolve();
    buf.append(4, 10);
    buf.close();
    expect(await reader).toEqual([1, 2, 3, 4]);
    // And once more after close: a finished buffer still replays.
    expect(await collect(buf.read())).toEqual([1, 2, 3, 4]);
  });

  it('drops the oldest entries beyond the cap when nobody is reading', async () => {
    const buf = new ReplayBuffer<number>({ capBytes: 30 });
    for (let i = 0; i < 10; i++) buf.append(i, 10);
    buf.close();
    expect(buf.sizeBytes).toBe(30);
    expect(await collect(buf.read())).toEqual([7, 8, 9]);
  });

  it('never drops what a live reader has not read: it signals pressure instead', async () => {
    const pressure: boolean[] = [];
    const buf = new ReplayBuffer<number>({ capBytes: 30, onPressure: (full) => pressure.push(full) });
    const reader = buf.read();
    // A reader is registered once its generator runs; it then waits for the first entry.
    const first = reader.next();
    for (let i = 0; i < 6; i++) buf.append(i, 10);
    expect(pressure).toEqual([true]);
    expect(buf.sizeBytes).toBeGreaterThan(30);
    const seen: number[] = [];
    const r0 = await first;
    if (!r0.done) seen.push(r0.value);
    for (let i = 1; i < 6; i++) {
      const r = await reader.next();
      if (!r.done) seen.push(r.value);
    }
    expect(seen).toEqual([0, 1, 2, 3, 4, 5]);
    expect(pressure).toEqual([true, false]);
    expect(buf.sizeBytes).toBeLessThanOrEqual(30);
    await reader.return();
  });

  it('stops waiting when the signal aborts', async () => {
    const buf = new ReplayBuffer<number>({ capBytes: 100 });
    const ac = new AbortController();
    const reading = collect(buf.read(ac.signal));
    ac.abort();
    await expect(reading).rejects.toThrow(/canceled/);
    expect(buf.readerCount).toBe(0);
  });
});
