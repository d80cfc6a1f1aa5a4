import { describe, expect, it } from 'vitest';
import { keepaliveIntervalMs, withKeepalive } from './keepalive.js';

async function* slow(items: string[], delayMs: number): AsyncGenerator<string> {
  for (const item of items) {
    await new Promise((r) => setTimeout(r, delayMs));
    yield item;
  }
}

describe('withKeepalive', () => {
  it('inserts keepalives while the source is idle and keeps the order of items', async () => {
    const out: string[] = [];
    const ac = new AbortController();
    for await (const x of withKeepalive(slow(['a', 'b'], 120), () => 'ka', 50, ac.signal)) out.push(x);
    expect(out.filter((x) => x !== 'ka')).toEqual(['a', 'b']);
    expect(out.filter((x) => x === 'ka').length).toBeGreaterThanOrEqual(2);
    expect(out.at(-1)).toBe('b');
  });

  it('passes a busy source through without keepalives', async () => {
    const out: string[] = [];
    const ac = new AbortController();
    for await (const x of withKeepalive(slow(['a', 'b', 'c'], 1), () => 'ka', 1000, ac.signal)) out.push(x);
    expect(out).toEqual(['a', 'b', 'c']);
  });

  it('ends with the abort reason', async () => {
    const ac = new AbortController();
    const it = withKeepalive(slow(['a'], 10_000), () => 'ka', 10_000, ac.signal);
    const next = it.next();
    ac.abort(new Error('deadline'));
    await expect(next).rejects.toThrow(/canceled|deadline/);
  });
});

describe('keepaliveIntervalMs', () => {
  it('reads seconds from the header and defaults to 90 s', () => {
    expect(keepaliveIntervalMs(new Headers({ 'Keepalive-Ping-Interval': '50' }))).toBe(50_000);
    expect(keepaliveIntervalMs(new Headers())).toBe(90_000);
    expect(keepaliveIntervalMs(new Headers({ 'Keepalive-Ping-Interval': 'x' }))).toBe(90_000);
  });
});
