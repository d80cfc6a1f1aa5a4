import { createHash } from 'node:crypto';
import { secretsEqual } from './access-token.js';

export type FileOperation = 'read' | 'write';

export interface SignatureInput {
  /** The raw `path` query value, as the client signed it (not resolved against a home directory). */
  path: string;
  operation: FileOperation;
  /** The raw `username` query value, or '' when absent. */
  username: string;
  /** Unix seconds; part of the signed text when present. */
  expiration?: number;
}

/** E2B's URL signature for /files: `v1_` + base64 (no padding) of sha256("path:op:user:token[:exp]"). */
export function fileSignature(input: SignatureInput, accessToken: string): string {
  const parts = [input.path, input.operation, input.username, accessToken];
  if (input.expiration !== undefined) parts.push(String(input.expiration));
  const digest = createHash('sha256').update(parts.join(':')).digest('base64').replace(/=+$/, '');
  return `v1_${digest}`;
}

export type SignatureCheck = { valid: true } | { valid: false; reason: string };

export function checkFileSignature(
  input: Omit<SignatureInput, 'expiration'> & { signature: string | null; expiration: string | null },
  accessToken: string,
  nowMs = Date.now(),
): SignatureCheck {
  if (!input.signature) return { valid: false, reason: 'missing signature' };
  let expiration: number | undefined;
  if (input.expiration !== null && input.expiration !== '') {
    if (!/^\d+$/.test(input.expiration)) return { valid: false, reason: 'invalid signature expiration' };
    expiration = Number(input.expiration);
    if (expiration * 1000 < nowMs) return { valid: false, reason: 'signature is already expired' };
  }
  const expected = fileSignature({ ...input, expiration }, accessToken);
  return secretsEqual(input.signature, expected)
    ? { valid: true }
    : { valid: false, reason: 'invalid signature' };
}
