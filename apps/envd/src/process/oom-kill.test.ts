import { describe, expect, it } from 'vitest';
import { chooseVictim, type ProcessMemory } from './oom-kill.js';

const MiB = 1024 * 1024;
const p = (pid: number, rssMiB: number, oomScoreAdj = 0): ProcessMemory => ({
  pid,
  rssBytes: rssMiB * MiB,
  oomScoreAdj,
});

describe('chooseVictim', () => {
  const total = 1024 * MiB;

  it('picks the largest resident set', () => {
    expect(chooseVictim([p(10, 50), p(11, 400), p(12, 100)], new Set(), total)?.pid).toBe(11);
  });

  it('never picks a protected pid (init, envd, the fork-server), even the largest', () => {
    const procs = [p(1, 900), p(7, 800), p(11, 20)];
    expect(chooseVictim(procs, new Set([1, 7]), total)?.pid).toBe(11);
  });

  it('honours oom_score_adj as Linux does: -1000 never, others shift by thousandths of memory', () => {
    expect(chooseVictim([p(10, 500, -1000), p(11, 20)], new Set(), total)?.pid).toBe(11);
    // 300 MiB - 500/1000 of 1 GiB < 100 MiB
    expect(chooseVictim([p(10, 300, -500), p(11, 100)], new Set(), total)?.pid).toBe(11);
    expect(chooseVictim([p(10, 300), p(11, 100, 500)], new Set(), total)?.pid).toBe(11);
  });

  it('finds nothing when only protected processes or processes without memory remain', () => {
    expect(chooseVictim([p(1, 900), p(9, 0)], new Set([1]), total)).toBeUndefined();
    expect(chooseVictim([], new Set(), total)).toBeUndefined();
  });
});
