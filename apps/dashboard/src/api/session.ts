import { useSyncExternalStore } from 'react';

/** Who is signed in, kept in localStorage so a reload stays signed in (docs/dashboard.md). */
export interface Session {
  token: string;
  email: string;
  /** The team the dashboard acts for (`X-Wrenn-Team`). */
  teamId?: string;
}

const KEY = 'wrenn.session';
const listeners = new Set<() => void>();
let current: Session | undefined = read();

function read(): Session | undefined {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : undefined;
  } catch {
    return undefined;
  }
}

export function setSession(next: Session | undefined): void {
  current = next;
  if (next) localStorage.setItem(KEY, JSON.stringify(next));
  else localStorage.removeItem(KEY);
  for (const listener of listeners) listener();
}

export const getSession = (): Session | undefined => current;

export function useSession(): Session | undefined {
  return useSyncExternalStore((listener) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }, getSession);
}
