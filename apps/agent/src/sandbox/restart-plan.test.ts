import { describe, expect, it } from 'vitest';
import { planRecovery, type LeftSandbox } from './restart-plan.js';

const left = (over: Partial<LeftSandbox>): LeftSandbox => ({
  saved: 'running',
  hasCheckpoint: false,
  hasPartial: false,
  runtime: 'running',
  ...over,
});

describe('what a restarted agent does with a sandbox the previous one left', () => {
  it('removes what was never recorded (a create in flight, an unclaimed pool member)', () => {
    expect(planRecovery(left({ saved: undefined }))).toEqual({ action: 'remove' });
    expect(planRecovery(left({ saved: undefined, intent: 'pause', hasPartial: true }))).toEqual({
      action: 'remove',
    });
  });

  it('adopts a running sandbox as it runs, waking nothing when nothing was under way', () => {
    expect(planRecovery(left({}))).toEqual({
      action: 'adopt-running',
      thaw: false,
      wake: false,
      dropCheckpoint: false,
    });
  });

  it('marks a running sandbox whose runtime is gone stopped', () => {
    expect(planRecovery(left({ runtime: 'gone' }))).toEqual({ action: 'stopped', reason: 'exited' });
  });

  it('keeps a paused sandbox paused, and stops one whose checkpoint is missing', () => {
    expect(planRecovery(left({ saved: 'paused', runtime: 'gone', hasCheckpoint: true }))).toEqual({
      action: 'paused',
      finishPause: false,
    });
    expect(planRecovery(left({ saved: 'paused', runtime: 'gone' }))).toEqual({
      action: 'stopped',
      reason: 'checkpoint-missing',
    });
  });

  describe('a pause cut short', () => {
    it('before or during the checkpoint, the sandbox still running: back to running', () => {
      expect(planRecovery(left({ intent: 'pause' }))).toEqual({ action: 'recover-pause' });
      expect(planRecovery(left({ intent: 'pause', hasPartial: true }))).toEqual({ action: 'recover-pause' });
    });

    it('after the sandbox saved itself and stopped: restored from what it saved (or stopped)', () => {
      expect(planRecovery(left({ intent: 'pause', runtime: 'gone', hasPartial: true }))).toEqual({
        action: 'recover-pause',
      });
    });

    it('after the checkpoint was complete and in place: paused, the record finished', () => {
      expect(planRecovery(left({ intent: 'pause', runtime: 'gone', hasCheckpoint: true }))).toEqual({
        action: 'paused',
        finishPause: true,
      });
      // Recorded paused already (only the teardown or the journal's removal was left).
      expect(
        planRecovery(left({ saved: 'paused', intent: 'pause', runtime: 'gone', hasCheckpoint: true })),
      ).toEqual({ action: 'paused', finishPause: false });
    });

    it('with nothing saved and the sandbox gone: stopped', () => {
      expect(planRecovery(left({ intent: 'pause', runtime: 'gone' }))).toEqual({
        action: 'stopped',
        reason: 'exited',
      });
    });
  });

  describe('a resume cut short', () => {
    it('before the restore: paused with its checkpoint', () => {
      expect(
        planRecovery(left({ saved: 'paused', intent: 'resume', runtime: 'gone', hasCheckpoint: true })),
      ).toEqual({ action: 'paused', finishPause: false });
    });

    it('after the restore: adopted running, woken, the spent checkpoint dropped', () => {
      expect(planRecovery(left({ saved: 'paused', intent: 'resume', hasCheckpoint: true }))).toEqual({
        action: 'adopt-running',
        thaw: false,
        wake: true,
        dropCheckpoint: true,
      });
      // Recorded running, the checkpoint not deleted yet.
      expect(planRecovery(left({ intent: 'resume', hasCheckpoint: true }))).toEqual({
        action: 'adopt-running',
        thaw: false,
        wake: true,
        dropCheckpoint: true,
      });
    });

    it('a spent checkpoint never brings back a sandbox that died running', () => {
      expect(planRecovery(left({ runtime: 'gone', hasCheckpoint: true }))).toEqual({
        action: 'stopped',
        reason: 'exited',
      });
    });
  });

  describe('a snapshot cut short', () => {
    it('while the sandbox was paused for it: paused (its staging template goes with the janitor)', () => {
      expect(
        planRecovery(left({ saved: 'paused', intent: 'snapshot', runtime: 'gone', hasCheckpoint: true })),
      ).toEqual({ action: 'paused', finishPause: false });
    });

    it('after its save, of a running sandbox: paused, then resumed, as the snapshot would have', () => {
      const snapshotOfRunning = { intent: 'snapshot', resumeAfter: true, runtime: 'gone' } as const;
      expect(planRecovery(left({ ...snapshotOfRunning, saved: 'paused', hasCheckpoint: true }))).toEqual({
        action: 'paused',
        finishPause: false,
        resume: true,
      });
      // The save was complete and in place, not yet recorded.
      expect(planRecovery(left({ ...snapshotOfRunning, hasCheckpoint: true }))).toEqual({
        action: 'paused',
        finishPause: true,
        resume: true,
      });
      // A pause is never resumed, whatever its intent says.
      expect(
        planRecovery(left({ intent: 'pause', resumeAfter: true, runtime: 'gone', hasCheckpoint: true })),
      ).toEqual({ action: 'paused', finishPause: true });
    });

    it('during its checkpoint: as a pause cut short', () => {
      expect(planRecovery(left({ intent: 'snapshot', hasPartial: true }))).toEqual({
        action: 'recover-pause',
      });
    });
  });

  it('a flatten cut short: thawed and adopted', () => {
    expect(planRecovery(left({ intent: 'flatten', runtime: 'frozen' }))).toEqual({
      action: 'adopt-running',
      thaw: true,
      wake: true,
      dropCheckpoint: false,
    });
  });
});
