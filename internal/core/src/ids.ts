import { randomBytes } from 'node:crypto';

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A short random id from [a-z0-9], safe in file names, hostnames and URLs. */
export function randomId(length = 20): string {
  const bytes = randomBytes(length);
  let id = '';
  for (const b of bytes) id += alphabet[b % alphabet.length];
  return id;
}
