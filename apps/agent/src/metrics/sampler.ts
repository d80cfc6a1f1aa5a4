import { statfs } from 'node:fs/promises';
import type { RuntimeStats } from '../runtime/driver.js';
import type { MetricSample } from './tiers.js';

export interface SampleInput {
  now: number;
  stats: RuntimeStats;
  /** The previous CPU reading; the first sample of a sandbox has none and reports 0 %. */
  previous?: { ns: number; at: number };
  vcpus: number;
  memoryMb: number;
  /** Where the sandbox's writable layer (its disk image) is mounted. */
  diskMount: string;
}

/** One metric sample: CPU over the interval since `previous`, memory and disk as they are now. */
export async function takeSample(input: SampleInput): Promise<MetricSample> {
  const { now, stats, previous, vcpus } = input;
  const disk = await statfs(input.diskMount);
  let cpuUsedPct = 0;
  if (previous && now > previous.at) {
    const busyNs = Math.max(0, stats.cpuNs - previous.ns);
    const wallNs = (now - previous.at) * 1e6;
    cpuUsedPct = Math.min(100, (busyNs / (wallNs * vcpus)) * 100);
  }
  return {
    time: now,
    cpuUsedPct,
    cpuCount: vcpus,
    memUsedBytes: stats.memUsedBytes,
    memTotalBytes: input.memoryMb * 1024 * 1024,
    diskUsedBytes: (disk.blocks - disk.bfree) * disk.bsize,
    diskTotalBytes: disk.blocks * disk.bsize,
  };
}
