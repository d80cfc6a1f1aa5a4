import { describe, expect, it } from 'vitest';
import { pollUntil } from './poll.js';

describe('pollUntil', () => {
  it('returns the first value that is not undefined, checking at once and then every interval', async () => {
    let calls = 0;
    const started = Date.now();
    const value = await pollUntil(() => (++calls === 3 ? 'ready' : undefined), {
      timeoutMs: 5000,
      intervalMs: 20,
    });
    expect(value).toBe('ready');
    expect(calls).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
  });

  it('gives up with undefined past the timeout; falsy values other than undefined count', async () => {
    let calls = 0;
    expect(await pollUntil(() => void calls++, { timeoutMs: 60, intervalMs: 20 })).toBeUndefined();
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(await pollUntil(() => 0, { timeoutMs: 60, intervalMs: 20 })).toBe(0);
    expect(await pollUntil(() => false, { timeoutMs: 60, intervalMs: 20 })).toBe(false);
  });

  it('ends on an error from the check, or on abort', async () => {
    await expect(
      pollUntil(
        () => {
          throw new Error('broken');
        },
        { timeoutMs: 1000, intervalMs: 10 },
      ),
    ).rejects.toThrow('broken');
    const ctrl = new AbortController();
    setTimeout(() => ctrl.abort(new Error('stop')), 30);
    await expect(
      pollUntil(() => undefined, { timeoutMs: 5000, intervalMs: 10, signal: ctrl.signal }),
    ).rejects.toThrow();
  });
});
