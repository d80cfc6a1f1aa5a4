import { ZodError } from 'zod';
import { type ApiError, invalidInput, toApiError } from '../http/errors.js';

/**
 * What an E2B client is told about a failure, as E2B's `{code: <status>, message}`: schema
 * failures are 400 naming the field, Hono's own errors keep their status (413, 415…), the agent's
 * Connect codes their HTTP status; anything else is undefined (a 500 without detail).
 */
export function e2bApiError(err: unknown): ApiError | undefined {
  if (err instanceof ZodError) return invalidInput(err);
  return toApiError(err);
}
