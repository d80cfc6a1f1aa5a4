import argon2 from 'argon2';

// OWASP's argon2id baseline (19 MiB, 2 passes) costs ~30 ms here: slow for guessing, fine for login.
const OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, OPTIONS);
}

// Verifying against this when the user does not exist makes "no such user" cost as much as "wrong
// password": response times do not reveal which emails have accounts.
let decoy: Promise<string> | undefined;

/** Constant-time check (argon2's own comparison); `hash` undefined = unknown user, still verified. */
export async function verifyPassword(hash: string | undefined, password: string): Promise<boolean> {
  decoy ??= hashPassword('wrenn-decoy-password');
  const ok = await argon2.verify(hash ?? (await decoy), password).catch(() => false);
  return hash !== undefined && ok;
}
