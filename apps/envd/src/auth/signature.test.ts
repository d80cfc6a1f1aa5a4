import { describe, expect, it } from 'vitest';
import { checkFileSignature, fileSignature } from './signature.js';

// Expected values computed independently (Python hashlib) from E2B's formula.
describe('fileSignature', () => {
  it('matches the E2B formula without expiration', () => {
    expect(fileSignature({ path: '/tmp/u.txt', operation: 'read', username: '' }, 'tok')).toBe(
      'v1_2KKNXOx7pO/7OuKPmWZh74D5yf2Ik7c/7jneEKFAJ1g',
    );
  });

  it('matches the E2B formula with expiration', () => {
    expect(
      fileSignature(
        { path: '/home/user/a.txt', operation: 'write', username: 'user', expiration: 1700000000 },
        'secret',
      ),
    ).toBe('v1_NuOL6MxlaYQ+owIRhnNeiDwJq5PQda3sqDKPDCZmEek');
  });
});

describe('checkFileSignature', () => {
  const base = { path: '/home/user/a.txt', operation: 'write' as const, username: 'user' };
  const signature = 'v1_NuOL6MxlaYQ+owIRhnNeiDwJq5PQda3sqDKPDCZmEek';

  it('accepts a valid signature before its expiration', () => {
    expect(
      checkFileSignature({ ...base, signature, expiration: '1700000000' }, 'secret', 1_600_000_000_000),
    ).toEqual({
      valid: true,
    });
  });

  it('rejects an expired signature', () => {
    const r = checkFileSignature(
      { ...base, signature, expiration: '1700000000' },
      'secret',
      1_800_000_000_000,
    );
    expect(r).toEqual({ valid: false, reason: 'signature is already expired' });
  });

  it('rejects a signature for another operation, user or token', () => {
    const now = 1_600_000_000_000;
    expect(
      checkFileSignature({ ...base, operation: 'read', signature, expiration: '1700000000' }, 'secret', now)
        .valid,
    ).toBe(false);
    expect(
      checkFileSignature({ ...base, username: 'root', signature, expiration: '1700000000' }, 'secret', now)
        .valid,
    ).toBe(false);
    expect(checkFileSignature({ ...base, signature, expiration: '1700000000' }, 'other', now).valid).toBe(
      false,
    );
    expect(checkFileSignature({ ...base, signature, expiration: null }, 'secret', now).valid).toBe(false);
    expect(checkFileSignature({ ...base, signature: null, expiration: null }, 'secret', now).valid).toBe(
      false,
    );
  });
});
