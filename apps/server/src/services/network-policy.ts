import { createHmac, timingSafeEqual } from 'node:crypto';
import { egressPolicyFrom, type EgressPolicy } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { ApiError } from '../http/errors.js';

/**
 * A sandbox's network settings as its owner gave them (the row's `network`), kept as given so both
 * APIs can show them back; the agent gets them as an `EgressPolicy` (`egressOf`). docs/network.md.
 */
export interface SandboxNetwork {
  /** Addresses, CIDRs and names let out even where `deny_out` would refuse them. */
  allow_out: string[];
  /** Addresses and CIDRs refused (`0.0.0.0/0`: everything not allowed). */
  deny_out: string[];
  /** false: the same as `0.0.0.0/0` in `deny_out`; null: not said. */
  allow_internet: boolean | null;
}

/** The header a private sandbox's traffic must carry (E2B's name). */
export const TRAFFIC_TOKEN_HEADER = 'e2b-traffic-access-token';

/**
 * Checks the lists (an error names the entry: `<prefix>.allow_out[2]: …`, E2B's names in its API)
 * and returns them as stored. Undefined when nothing was said at all.
 */
export function sandboxNetwork(
  input: { allowOut?: string[]; denyOut?: string[]; allowInternet?: boolean },
  names: { allowOut: string; denyOut: string },
): SandboxNetwork | undefined {
  if (input.allowOut === undefined && input.denyOut === undefined && input.allowInternet === undefined)
    return undefined;
  try {
    egressPolicyFrom(
      { allowOut: input.allowOut, denyOut: input.denyOut, internet: input.allowInternet },
      (list, i) => `${list === 'allow' ? names.allowOut : names.denyOut}[${i}]`,
    );
  } catch (err) {
    throw new ApiError(400, 'invalid_argument', (err as Error).message);
  }
  return {
    allow_out: input.allowOut ?? [],
    deny_out: input.denyOut ?? [],
    allow_internet: input.allowInternet ?? null,
  };
}

/** What the agent enforces for `network` (an empty policy: none of the sandbox's own). */
export function egressOf(
  network: SandboxNetwork | null | undefined,
): MessageInitShape<typeof hostagent.EgressPolicySchema> {
  if (!network) return {};
  const policy: EgressPolicy = egressPolicyFrom(
    {
      allowOut: network.allow_out,
      denyOut: network.deny_out,
      internet: network.allow_internet ?? undefined,
    },
    (list, i) => `network.${list}_out[${i}]`,
  );
  return policy;
}

/**
 * The traffic token of a sandbox whose traffic is private: derived from the server's session key and
 * the sandbox id (an HMAC), so nothing is stored and every replica that shares the key agrees.
 */
export function trafficToken(key: string, sandboxId: string): string {
  return createHmac('sha256', key).update(`wrenn-traffic:${sandboxId}`).digest('base64url');
}

/** Whether `given` (the header as sent) is `expected`, in constant time. */
export function trafficTokenMatches(expected: string, given: string | string[] | undefined): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
