import { describe, expect, it } from 'vitest';
import { Code, codeName, httpStatusFromCode } from './errors.js';

describe('the Connect code vocabulary', () => {
  it('names every code as the Connect protocol does', () => {
    expect(codeName(Code.FailedPrecondition)).toBe('failed_precondition');
    expect(codeName(Code.InvalidArgument)).toBe('invalid_argument');
    expect(codeName(Code.NotFound)).toBe('not_found');
    expect(codeName(Code.DataLoss)).toBe('data_loss');
    expect(codeName(Code.Canceled)).toBe('canceled');
  });

  it('gives each code its HTTP status, a conflict with the current state being 409', () => {
    expect(httpStatusFromCode(Code.FailedPrecondition)).toBe(409);
    expect(httpStatusFromCode(Code.Aborted)).toBe(409);
    expect(httpStatusFromCode(Code.AlreadyExists)).toBe(409);
    expect(httpStatusFromCode(Code.InvalidArgument)).toBe(400);
    expect(httpStatusFromCode(Code.ResourceExhausted)).toBe(429);
    expect(httpStatusFromCode(Code.Unauthenticated)).toBe(401);
    for (const code of Object.values(Code).filter((c): c is Code => typeof c === 'number')) {
      expect(httpStatusFromCode(code), Code[code]).toBeGreaterThanOrEqual(400);
    }
  });
});
