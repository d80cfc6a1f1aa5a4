import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { SandboxPaths } from '../storage/layout.js';

/** Operations that change what a sandbox holds on the host and cannot be done in one step. */
export type Operation = 'pause' | 'resume' | 'snapshot' | 'flatten';

/**
 * The intent an operation leaves in the sandbox's directory (`operation.json`) for as long as it
 * runs: an agent that dies meanwhile tells its successor what was under way, which the facts on
 * the host alone cannot always say (a complete checkpoint beside a running record is a pause that
 * finished, or a resume that did).
 */
export interface Intent {
  op: Operation;
  /** The template a snapshot or flatten was writing (its staging directory goes). */
  template?: string;
  /** A snapshot of a running sandbox: it runs again afterwards, and after an agent that died too. */
  resumeAfter?: boolean;
  startedAt: string;
}

export async function readIntent(paths: SandboxPaths): Promise<Intent | undefined> {
  const text = await readFile(paths.operationFile, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Intent;
  } catch {
    return undefined;
  }
}

export async function clearIntent(paths: SandboxPaths): Promise<void> {
  await rm(paths.operationFile, { force: true });
}

/** Runs `fn` with its intent on disk: written (atomically) before it starts, removed when it ends. */
export async function journaled<T>(
  paths: SandboxPaths,
  intent: Omit<Intent, 'startedAt'>,
  fn: () => Promise<T>,
): Promise<T> {
  const tmp = `${paths.operationFile}.tmp`;
  await writeFile(tmp, JSON.stringify({ ...intent, startedAt: new Date().toISOString() }), { mode: 0o600 });
  await rename(tmp, paths.operationFile);
  try {
    return await fn();
  } finally {
    await clearIntent(paths).catch(() => undefined);
  }
}
