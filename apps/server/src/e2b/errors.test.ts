import { HTTPException } from 'hono/http-exception';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Code, ConnectError } from '@wrenn/core';
import { ApiError } from '../http/errors.js';
import { e2bApiError } from './errors.js';

describe("the E2B API's errors", () => {
  it('keep the status of an HTTP error, whatever it is', () => {
    for (const status of [400, 401, 404, 405, 413, 415, 431] as const) {
      const err = e2bApiError(new HTTPException(status, { message: `status ${status}` }));
      expect(err?.status, String(status)).toBe(status);
      expect(err?.message).toBe(`status ${status}`);
    }
    expect(e2bApiError(new HTTPException(400, { message: 'Malformed JSON in request body' }))).toMatchObject({
      status: 400,
      message: 'body: malformed JSON',
    });
  });

  it("map schema failures to 400, the agent's codes to their status, and say nothing of the rest", () => {
    const zod = z.object({ timeout: z.number() }).safeParse({ timeout: 'soon' }).error;
    expect(e2bApiError(zod)?.status).toBe(400);
    expect(e2bApiError(zod)?.message).toMatch(/^timeout: /);
    expect(e2bApiError(new ApiError(409, 'failed_precondition', 'paused'))?.status).toBe(409);
    expect(e2bApiError(new ConnectError('no such sandbox', Code.NotFound))?.status).toBe(404);
    expect(e2bApiError(new ConnectError('busy', Code.FailedPrecondition))?.status).toBe(409);
    expect(e2bApiError(new ConnectError('disk full', Code.ResourceExhausted))?.status).toBe(429);
    expect(e2bApiError(new ConnectError('bug', Code.Internal))).toBeUndefined();
    expect(e2bApiError(new Error('bug'))).toBeUndefined();
  });
});
