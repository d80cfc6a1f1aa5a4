import { takeSample } from '../metrics/sampler.js';
import type { SandboxContext } from '../sandbox/resources.js';

/** How often every running sandbox's CPU, memory and disk are sampled. */
export const METRICS_INTERVAL_MS = 500;

/** One pass of the metrics sampler over every running sandbox. */
export async function sampleMetrics(ctx: SandboxContext, now = Date.now()): Promise<void> {
  await Promise.all(
    ctx.registry.records().map(async (record) => {
      if (record.state !== 'running') return;
      try {
        const stats = await ctx.deps.runtime.stats(record.runtimeId);
        const sample = await takeSample({
          now,
          stats,
          previous: record.cpuMark,
          vcpus: record.info.vcpus,
          memoryMb: record.info.memoryMb,
          diskMount: record.paths.diskMount,
        });
        record.cpuMark = { ns: stats.cpuNs, at: now };
        record.metrics.add(sample);
      } catch {
        // A sandbox stopping under us has no cgroup any more; the next pass will not ask.
      }
    }),
  );
}
