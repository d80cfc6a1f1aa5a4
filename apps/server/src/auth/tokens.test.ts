import { afterEach, describe, expect, it, vi } from 'vitest';
import { SessionTokens } from './tokens.js';

describe('SessionTokens', () => {
  afterEach(() => vi.useRealTimers());

  it('verifies its own tokens, again from memory, and refuses forged ones', async () => {
    const tokens = new SessionTokens('a-secret-that-is-long-enough-for-hs256!!');
    const token = await tokens.issue('user-1');
    expect(await tokens.verify(token)).toBe('user-1');
    expect(await tokens.verify(token)).toBe('user-1');
    const other = new SessionTokens('another-secret-that-is-long-enough-for-hs256');
    expect(await other.verify(token)).toBeUndefined();
    const [header, payload] = token.split('.');
    expect(await tokens.verify(`${header}.${payload}.${'A'.repeat(43)}`)).toBeUndefined();
  });

  it('forgets a remembered token once it expires', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-07T00:00:00Z'));
    const tokens = new SessionTokens('a-secret-that-is-long-enough-for-hs256!!');
    const token = await tokens.issue('user-1');
    expect(await tokens.verify(token)).toBe('user-1');
    vi.setSystemTime(new Date('2026-12-07T23:59:00Z'));
    expect(await tokens.verify(token)).toBe('user-1');
    vi.setSystemTime(new Date('2026-12-08T00:00:01Z'));
    expect(await tokens.verify(token)).toBeUndefined();
  });
});
