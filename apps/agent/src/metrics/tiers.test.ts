import { describe, expect, it } from 'vitest';
import { MetricTiers, type MetricSample } from './tiers.js';

const base = Date.UTC(2026, 0, 1, 0, 0, 0);

function sample(time: number, cpu: number, mem = 100): MetricSample {
  return {
    time,
    cpuUsedPct: cpu,
    cpuCount: 2,
    memUsedBytes: mem,
    memTotalBytes: 1000,
    diskUsedBytes: 10,
    diskTotalBytes: 100,
  };
}

describe('MetricTiers', () => {
  it('keeps raw samples for 10 minutes only', () => {
    const tiers = new MetricTiers();
    for (let t = 0; t < 11 * 60_000; t += 500) tiers.add(sample(base + t, 1));
    const raw = tiers.range('10m', base + 11 * 60_000);
    expect(raw).toHaveLength(1200);
    expect(raw[0]?.time).toBe(base + 60_000);
  });

  it('averages 30 s buckets, the open one included', () => {
    const tiers = new MetricTiers();
    // Bucket 0: cpu 10 and 30; bucket 1: cpu 50 (still open).
    tiers.add(sample(base + 1000, 10, 100));
    tiers.add(sample(base + 2000, 30, 300));
    tiers.add(sample(base + 31_000, 50, 500));
    const avg = tiers.range('2h', base + 31_000);
    expect(avg.map((s) => [s.time - base, s.cpuUsedPct, s.memUsedBytes])).toEqual([
      [0, 20, 200],
      [30_000, 50, 500],
    ]);
  });

  it('keeps 5 min averages for 24 hours and drops older ones', () => {
    const tiers = new MetricTiers();
    for (let t = 0; t < 25 * 3_600_000; t += 60_000) tiers.add(sample(base + t, (t / 60_000) % 5));
    const day = tiers.range('24h', base + 25 * 3_600_000);
    expect(day.length).toBeGreaterThanOrEqual(288);
    expect(day.length).toBeLessThanOrEqual(289);
    // Each 5-minute bucket holds cpu values 0..4, so every average is 2.
    expect(new Set(day.map((s) => s.cpuUsedPct))).toEqual(new Set([2]));
    expect(day[0]!.time).toBeGreaterThanOrEqual(base + 3_600_000);
    // One sample a minute fills every other 30 s bucket of the last 2 hours.
    expect(tiers.range('2h', base + 25 * 3_600_000)).toHaveLength(120);
  });

  it('answers empty ranges when nothing was sampled', () => {
    const tiers = new MetricTiers();
    expect(tiers.range('10m')).toEqual([]);
    expect(tiers.range('24h')).toEqual([]);
  });
});
