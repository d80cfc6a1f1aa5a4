import { describe, expect, it } from 'vitest';
import { authorize } from './request-auth.js';
import { fileSignature } from './signature.js';

describe('authorize', () => {
  it('allows everything before /init set a token', () => {
    expect(authorize(undefined, undefined).allowed).toBe(true);
  });

  it('requires the exact token once one is set', () => {
    expect(authorize('tok', undefined).allowed).toBe(false);
    expect(authorize('tok', 'tok2').allowed).toBe(false);
    expect(authorize('tok', 'to').allowed).toBe(false);
    expect(authorize('tok', 'tok').allowed).toBe(true);
  });

  it('accepts a signature instead of the token for /files only', () => {
    const query = new URLSearchParams({ path: 'a.txt' });
    query.set('signature', fileSignature({ path: 'a.txt', operation: 'read', username: '' }, 'tok'));
    expect(authorize('tok', undefined, { operation: 'read', query }).allowed).toBe(true);
    expect(authorize('tok', undefined, { operation: 'write', query }).allowed).toBe(false);
    expect(authorize('tok', undefined).allowed).toBe(false);
  });
});
