import { describe, expect, it } from 'vitest';
import { allSucceeded } from './settle.js';

const after = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('allSucceeded', () => {
  it('rethrows the first failure only after the slower sibling has finished', async () => {
    let siblingDone = false;
    const failing = Promise.reject(new Error('first'));
    const slow = after(30).then(() => (siblingDone = true));
    await expect(allSucceeded([failing, slow])).rejects.toThrow('first');
    expect(siblingDone).toBe(true);
  });

  it('rethrows the failure of the earliest task in the list when several fail', async () => {
    const late = after(20).then(() => Promise.reject(new Error('late')));
    const early = Promise.reject(new Error('early'));
    await expect(allSucceeded([late, early])).rejects.toThrow('late');
  });

  it('resolves when every task succeeds', async () => {
    await expect(allSucceeded([after(5), Promise.resolve(1)])).resolves.toBeUndefined();
  });
});
