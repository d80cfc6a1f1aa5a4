import { Code, ConnectError } from '@wrenn/core';
import { describe, expect, it } from 'vitest';
import { toApiError } from './errors.js';

describe('toApiError', () => {
  it('answers an agent call cut mid-way (its agent restarting) with 503, not 500', () => {
    const err = toApiError(
      new ConnectError('http/2 stream closed with error code CANCEL (0x8)', Code.Canceled),
    );
    expect(err).toMatchObject({ status: 503, code: 'unavailable' });
    expect(err?.message).toMatch(/agent stopped answering.*CANCEL/);
  });

  it('tells the client what the agent refused, and nothing of an internal error', () => {
    expect(toApiError(new ConnectError('sandbox "x" not found', Code.NotFound))).toMatchObject({
      status: 404,
      message: 'sandbox "x" not found',
    });
    expect(toApiError(new ConnectError('disk exploded', Code.Internal))).toBeUndefined();
  });
});
