/**
 * What every Wrenn program agrees on about sandboxes: the shape of an id and the timeout bound. The
 * agent makes ids (`randomId`, 20 characters) and checks them on every call; the control plane and
 * the proxy check them before asking the agent, with the same rule.
 */

/** A sandbox id: 8–32 lowercase letters or digits (safe in file names, host names and URLs). */
/** A uuid as PostgreSQL prints one (lower case): team, user, host, template and build ids. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const SANDBOX_ID_PATTERN = /^[a-z0-9]{8,32}$/;
/** The rule in words, for error messages. */
export const SANDBOX_ID_RULE = 'must be 8-32 lowercase letters or digits';

export function isSandboxId(id: string): boolean {
  return SANDBOX_ID_PATTERN.test(id);
}

/** The most ready sandboxes one host keeps of one template (a warm pool's size). */
export const MAX_POOL_SIZE = 64;

/** The longest inactivity timeout a sandbox may have: 30 days (0 = never). */
export const MAX_TIMEOUT_SEC = 30 * 24 * 3600;

/** A requested timeout brought within 1 s – 30 days (E2B's API clamps rather than refuses). */
export function clampTimeoutSec(seconds: number): number {
  return Math.min(Math.max(seconds, 1), MAX_TIMEOUT_SEC);
}
