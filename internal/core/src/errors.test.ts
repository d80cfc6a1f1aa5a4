import { describe, expect, it } from 'vitest';
import { Code, codeFromHttpStatus, codeName, httpStatusFromCode } from './errors.js';

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

describe('codeFromHttpStatus', () => {
  it('inverts the status table, preferring the code a caller acts on where statuses are shared', () => {
    expect(codeFromHttpStatus(404)).toBe(Code.NotFound);
    expect(codeFromHttpStatus(401)).toBe(Code.Unauthenticated);
    expect(codeFromHttpStatus(403)).toBe(Code.PermissionDenied);
    expect(codeFromHttpStatus(400)).toBe(Code.InvalidArgument);
    expect(codeFromHttpStatus(409)).toBe(Code.AlreadyExists);
    expect(codeFromHttpStatus(413)).toBe(Code.ResourceExhausted);
    expect(codeFromHttpStatus(507)).toBe(Code.ResourceExhausted);
    expect(codeFromHttpStatus(502)).toBe(Code.Unavailable);
    expect(codeFromHttpStatus(501)).toBe(Code.Unavailable);
    expect(codeFromHttpStatus(418)).toBe(Code.Unknown);
    for (const code of [Code.NotFound, Code.Unauthenticated, Code.PermissionDenied, Code.Canceled]) {
      expect(codeFromHttpStatus(httpStatusFromCode(code))).toBe(code);
    }
  });
});
