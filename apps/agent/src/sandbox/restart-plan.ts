import type { Operation } from './journal.js';

/** What a starting agent finds of one sandbox a previous agent left (`sandboxes/<dir>/`). */
export interface LeftSandbox {
  /** `sandbox.json`: what the previous agent last recorded; undefined when it recorded nothing. */
  saved?: 'running' | 'paused';
  /** `operation.json`: what it was doing when it died. */
  intent?: Operation;
  /** The intent was a snapshot of a running sandbox: it was to run again afterwards. */
  resumeAfter?: boolean;
  /** A complete `checkpoint/`. */
  hasCheckpoint: boolean;
  /** A `checkpoint.partial/` (a save that may or may not have finished). */
  hasPartial: boolean;
  /** The runtime's word, once no command of the previous agent works on the sandbox any more. */
  runtime: 'running' | 'frozen' | 'gone';
}

/** What the starting agent does with it; every plan ends with the sandbox running, paused or stopped. */
export type RecoveryPlan =
  /** Nothing recorded (a create or a pool member in flight): the janitor removes whatever there is. */
  | { action: 'remove' }
  /** Runs: take it over where it runs. */
  | {
      action: 'adopt-running';
      /** Frozen by a flatten cut short: thaw it. */
      thaw: boolean;
      /** An operation was under way: envd may be quiesced and the slot not activated yet. */
      wake: boolean;
      /** A checkpoint the sandbox has moved on from (a resume that did not live to delete it). */
      dropCheckpoint: boolean;
    }
  /**
   * A pause (or a snapshot's) was cut short before its checkpoint was complete: as a failed pause,
   * the sandbox is brought back running (woken if it still runs, restored from what it saved if it
   * stopped after saving itself), or stopped when neither works.
   */
  | { action: 'recover-pause' }
  /**
   * On disk as a checkpoint: adopted paused (`finishPause`: the pause had saved it, not yet recorded
   * it), and resumed (`resume`) when a snapshot of a running sandbox was cut short after its save.
   */
  | { action: 'paused'; finishPause: boolean; resume?: true }
  /** Gone, with nothing to bring it back from. */
  | { action: 'stopped'; reason: 'exited' | 'checkpoint-missing' };

const SAVES = new Set<Operation | undefined>(['pause', 'snapshot']);

/**
 * The journal decisions: the facts on the host decide, the intent only where they are ambiguous (a
 * complete checkpoint beside a running record is a pause that finished only if a pause was under
 * way; otherwise it is a resume's spent checkpoint).
 */
export function planRecovery(left: LeftSandbox): RecoveryPlan {
  const { saved, intent, hasCheckpoint, hasPartial, runtime } = left;
  const resume = intent === 'snapshot' && left.resumeAfter ? { resume: true as const } : {};
  if (!saved) return { action: 'remove' };
  const alive = runtime !== 'gone';
  if (saved === 'running' && SAVES.has(intent) && !hasCheckpoint && (alive || hasPartial))
    return { action: 'recover-pause' };
  if (alive) {
    return {
      action: 'adopt-running',
      thaw: runtime === 'frozen',
      wake: intent !== undefined || saved === 'paused',
      dropCheckpoint: hasCheckpoint,
    };
  }
  if (saved === 'paused')
    return hasCheckpoint
      ? { action: 'paused', finishPause: false, ...resume }
      : { action: 'stopped', reason: 'checkpoint-missing' };
  if (hasCheckpoint && SAVES.has(intent)) return { action: 'paused', finishPause: true, ...resume };
  return { action: 'stopped', reason: 'exited' };
}
