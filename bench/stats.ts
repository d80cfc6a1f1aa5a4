/** min / median / p95 of a sample, in the unit it was measured in. */
export function summarize(samples: number[]): { n: number; min: number; median: number; p95: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  return { n: s.length, min: s[0] ?? NaN, median: at(0.5), p95: at(0.95) };
}

/** A row comparing two samples: median of `measured` − median of `baseline`, and that in %. */
export interface OverheadRow {
  name: string;
  measured: number[];
  baseline: number[];
}

export function printTable(title: string, rows: ([string, number[], string] | OverheadRow)[]): void {
  console.log(`\n${title}`);
  console.log(
    `${'measurement'.padEnd(44)} ${'n'.padStart(4)} ${'min'.padStart(9)} ${'median'.padStart(9)} ${'p95'.padStart(9)}  unit`,
  );
  const f = (v: number) => v.toFixed(1).padStart(9);
  for (const row of rows) {
    if (!Array.isArray(row)) {
      const diff = summarize(row.measured).median - summarize(row.baseline).median;
      const pct = (diff / summarize(row.baseline).median) * 100;
      const sign = diff >= 0 ? '+' : '';
      console.log(
        `${row.name.padEnd(44)} ${''.padStart(4)} ${''.padStart(9)} ${(sign + diff.toFixed(1)).padStart(9)} ${''.padStart(9)}  ms (${sign}${pct.toFixed(1)} %)`,
      );
      continue;
    }
    const [name, samples, unit] = row;
    const { n, min, median, p95 } = summarize(samples);
    console.log(`${name.padEnd(44)} ${String(n).padStart(4)} ${f(min)} ${f(median)} ${f(p95)}  ${unit}`);
  }
}

export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const result = await fn();
  return [result, performance.now() - t];
}

/** p50 / p95 / p99 of a sample (nearest rank), for measurements whose tail matters. */
export function percentiles(samples: number[]): { n: number; p50: number; p95: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  return { n: s.length, p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

/** A table of p50 / p95 / p99 rows; `digits` decimals (sub-millisecond queries need more than one). */
export function printPercentiles(title: string, rows: [string, number[], string][], digits = 2): void {
  console.log(`\n${title}`);
  console.log(
    `${'measurement'.padEnd(52)} ${'n'.padStart(5)} ${'p50'.padStart(9)} ${'p95'.padStart(9)} ${'p99'.padStart(9)}  unit`,
  );
  const f = (v: number) => v.toFixed(digits).padStart(9);
  for (const [name, samples, unit] of rows) {
    const { n, p50, p95, p99 } = percentiles(samples);
    console.log(`${name.padEnd(52)} ${String(n).padStart(5)} ${f(p50)} ${f(p95)} ${f(p99)}  ${unit}`);
  }
}
