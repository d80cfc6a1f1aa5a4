/** One reading of a sandbox's resource use. */
export interface MetricSample {
  time: number;
  /** Share of the sandbox's vCPUs in use, 0–100. */
  cpuUsedPct: number;
  cpuCount: number;
  memUsedBytes: number;
  memTotalBytes: number;
  diskUsedBytes: number;
  diskTotalBytes: number;
}

export type MetricsRange = '10m' | '2h' | '24h';

interface TierSpec {
  /** Width of one averaged bucket; 0 keeps raw samples. */
  bucketMs: number;
  retentionMs: number;
}

const MINUTE = 60_000;

export const TIERS: Record<MetricsRange, TierSpec> = {
  '10m': { bucketMs: 0, retentionMs: 10 * MINUTE },
  '2h': { bucketMs: 30_000, retentionMs: 120 * MINUTE },
  '24h': { bucketMs: 5 * MINUTE, retentionMs: 24 * 60 * MINUTE },
};

/**
 * A sandbox's metrics in three tiers: raw samples for 10 minutes, 30 s averages for 2 hours, 5 min
 * averages for 24 hours. A bucket is averaged when the first sample past it arrives (or on flush), so
 * memory stays bounded: ~1200 raw samples plus ~530 averages per sandbox.
 */
export class MetricTiers {
  private readonly raw: MetricSample[] = [];
  private readonly averaged = new Map<MetricsRange, { done: MetricSample[]; open: MetricSample[] }>([
    ['2h', { done: [], open: [] }],
    ['24h', { done: [], open: [] }],
  ]);

  add(sample: MetricSample): void {
    this.raw.push(sample);
    for (const [range, tier] of this.averaged) {
      const { bucketMs } = TIERS[range];
      const first = tier.open[0];
      if (first && bucketStart(first.time, bucketMs) !== bucketStart(sample.time, bucketMs)) {
        tier.done.push(average(tier.open, bucketStart(first.time, bucketMs)));
        tier.open.length = 0;
      }
      tier.open.push(sample);
    }
    this.prune(sample.time);
  }

  /** Samples of one tier, oldest first; the open bucket of an averaged tier is included as it stands. */
  range(range: MetricsRange, now = Date.now()): MetricSample[] {
    this.prune(now);
    if (range === '10m') return [...this.raw];
    const tier = this.averaged.get(range);
    if (!tier) return [];
    const { bucketMs } = TIERS[range];
    const first = tier.open[0];
    return first ? [...tier.done, average(tier.open, bucketStart(first.time, bucketMs))] : [...tier.done];
  }

  private prune(now: number): void {
    dropOlderThan(this.raw, now - TIERS['10m'].retentionMs);
    for (const [range, tier] of this.averaged) dropOlderThan(tier.done, now - TIERS[range].retentionMs);
  }
}

function bucketStart(time: number, bucketMs: number): number {
  return time - (time % bucketMs);
}

function dropOlderThan(samples: MetricSample[], cutoff: number): void {
  let n = 0;
  while (n < samples.length && (samples[n]?.time ?? Infinity) < cutoff) n++;
  if (n) samples.splice(0, n);
}

function average(samples: MetricSample[], time: number): MetricSample {
  const mean = (pick: (s: MetricSample) => number) =>
    samples.reduce((sum, s) => sum + pick(s), 0) / Math.max(samples.length, 1);
  const last = samples[samples.length - 1];
  return {
    time,
    cpuUsedPct: mean((s) => s.cpuUsedPct),
    cpuCount: last?.cpuCount ?? 0,
    memUsedBytes: Math.round(mean((s) => s.memUsedBytes)),
    memTotalBytes: last?.memTotalBytes ?? 0,
    diskUsedBytes: Math.round(mean((s) => s.diskUsedBytes)),
    diskTotalBytes: last?.diskTotalBytes ?? 0,
  };
}
