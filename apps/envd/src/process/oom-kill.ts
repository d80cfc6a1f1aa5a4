import { readdirSync, readFileSync } from 'node:fs';
import { totalmem } from 'node:os';

/** A process as the OOM choice sees it. */
export interface ProcessMemory {
  pid: number;
  rssBytes: number;
  /** -1000 (never) … 1000, as /proc/<pid>/oom_score_adj says; Linux's meaning. */
  oomScoreAdj: number;
}

export interface OomVictim {
  pid: number;
  command: string;
  rssBytes: number;
}

const PAGE_SIZE = 4096;
const OOM_SCORE_ADJ_MIN = -1000;

/**
 * The process Linux's OOM killer would pick: the largest resident set, shifted by oom_score_adj in
 * thousandths of the memory there is (`oom_badness`). Protected pids (init, envd, its fork-server) and
 * processes at -1000 are never chosen, nor are ones that hold no memory (zombies).
 */
export function chooseVictim(
  processes: readonly ProcessMemory[],
  protectedPids: ReadonlySet<number>,
  totalBytes: number,
): ProcessMemory | undefined {
  let best: { p: ProcessMemory; score: number } | undefined;
  for (const p of processes) {
    if (protectedPids.has(p.pid) || p.oomScoreAdj <= OOM_SCORE_ADJ_MIN || p.rssBytes <= 0) continue;
    const score = p.rssBytes + (p.oomScoreAdj * totalBytes) / 1000;
    if (!best || score > best.score) best = { p, score };
  }
  return best?.p;
}

/**
 * Every process's resident set and oom_score_adj (one that ends meanwhile is left out). Synchronous
 * on purpose: it runs when the sandbox is out of memory and its CPU is usually contended, and a
 * round trip through libuv's thread pool per file costs far more than the reads themselves.
 */
export function processMemory(procRoot = '/proc'): ProcessMemory[] {
  const found: ProcessMemory[] = [];
  for (const entry of readdirSync(procRoot)) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const pages = Number(readFileSync(`${procRoot}/${entry}/statm`, 'utf8').split(' ')[1]);
      const adj = Number(readFileSync(`${procRoot}/${entry}/oom_score_adj`, 'utf8').trim()) || 0;
      found.push({ pid: Number(entry), rssBytes: pages * PAGE_SIZE, oomScoreAdj: adj });
    } catch {
      // ended meanwhile
    }
  }
  return found;
}

/**
 * Kills (SIGKILL) the process the OOM choice names, as the kernel would when the sandbox runs out of
 * memory: the agent asks when the sandbox's memory went past its limit. Undefined: nothing to kill.
 */
export function killLargestProcess(protectedPids: ReadonlySet<number>): OomVictim | undefined {
  // Another try when the chosen process ended on its own before the signal reached it.
  for (let attempt = 0; attempt < 3; attempt++) {
    const victim = chooseVictim(processMemory(), protectedPids, totalmem());
    if (!victim) return undefined;
    let command = '';
    try {
      command = readFileSync(`/proc/${victim.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    } catch {
      // gone: the kill below says so
    }
    try {
      process.kill(victim.pid, 'SIGKILL');
      return { pid: victim.pid, command: command.slice(0, 512), rssBytes: victim.rssBytes };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  return undefined;
}
