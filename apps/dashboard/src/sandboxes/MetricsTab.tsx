import { useQuery } from '@tanstack/react-query';
import { useEffect, useId, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, unwrap, type Schemas } from '../api/client.js';
import { Empty, QueryView } from '../ui/states.js';
import './sandbox.css';

type Range = '10m' | '2h' | '24h';
type Point = Schemas['MetricPoint'];

const RANGES: { value: Range; label: string; long: string; refreshMs: number }[] = [
  // The agent samples twice a second; the 2 h and 24 h tiers are 30 s and 5 min averages.
  { value: '10m', label: '10 min', long: 'the last 10 minutes', refreshMs: 5_000 },
  { value: '2h', label: '2 h', long: 'the last 2 hours', refreshMs: 30_000 },
  { value: '24h', label: '24 h', long: 'the last 24 hours', refreshMs: 60_000 },
];

const MIB = 1024 * 1024;

/**
 * CPU, memory and disk over 10 min, 2 h or 24 h, refreshed while the tab is open. Loaded only when
 * opened, so uPlot is not in the first load.
 */
export default function MetricsTab({ sandboxId }: { sandboxId: string }) {
  const [range, setRange] = useState<Range>('10m');
  const chosen = RANGES.find((r) => r.value === range)!;
  const metrics = useQuery({
    queryKey: ['metrics', sandboxId, range],
    queryFn: async () =>
      (
        await unwrap(
          api.GET('/v1/sandboxes/{id}/metrics', { params: { path: { id: sandboxId }, query: { range } } }),
        )
      ).metrics,
    refetchInterval: chosen.refreshMs,
  });

  return (
    <section aria-label="Metrics">
      <fieldset className="range-picker">
        <legend>Range</legend>
        {RANGES.map((r) => (
          <label key={r.value}>
            <input
              type="radio"
              name="metrics-range"
              value={r.value}
              checked={range === r.value}
              onChange={() => setRange(r.value)}
            />
            {r.label}
          </label>
        ))}
      </fieldset>
      <QueryView
        query={metrics}
        what="metrics"
        empty={
          <Empty title="No samples yet.">
            <p className="muted">The host samples a running sandbox twice a second; this refreshes itself.</p>
          </Empty>
        }
      >
        {(data) => <Charts points={data} over={chosen.long} />}
      </QueryView>
    </section>
  );
}

function Charts({ points, over }: { points: Point[]; over: string }) {
  const time = points.map((p) => Date.parse(p.time) / 1000);
  const last = points.at(-1)!;
  const mib = (bytes: number) => Math.round(bytes / MIB);
  return (
    <div className="charts">
      <Chart
        title="CPU"
        latest={`${last.cpu_used_pct.toFixed(1)} % of ${last.cpu_count} vCPU`}
        description={`CPU use over ${over}, percent of the sandbox's vCPUs`}
        unit="%"
        data={[time, points.map((p) => p.cpu_used_pct)]}
        max={100}
      />
      <Chart
        title="Memory"
        latest={`${mib(last.mem_used_bytes)} of ${mib(last.mem_total_bytes)} MiB`}
        description={`Memory used over ${over}, in MiB`}
        unit="MiB"
        data={[time, points.map((p) => p.mem_used_bytes / MIB)]}
        max={last.mem_total_bytes / MIB}
      />
      <Chart
        title="Disk"
        latest={`${mib(last.disk_used_bytes)} of ${mib(last.disk_total_bytes)} MiB`}
        description={`Disk used over ${over}, in MiB`}
        unit="MiB"
        data={[time, points.map((p) => p.disk_used_bytes / MIB)]}
        max={last.disk_total_bytes / MIB}
      />
    </div>
  );
}

/** An axis label short enough for the axis: `2.5 GiB` rather than `2560 MiB`. */
function tick(value: number, unit: string): string {
  if (unit === 'MiB' && value >= 1024) return `${+(value / 1024).toFixed(1)} GiB`;
  return `${+value.toFixed(1)} ${unit}`;
}

const cssVar = (name: string) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || 'currentColor';

/** One uPlot chart sized to its box; the canvas is an image named by `description` and the caption. */
function Chart(props: {
  title: string;
  latest: string;
  description: string;
  unit: string;
  data: [number[], number[]];
  max: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot>(null);
  const captionId = useId();
  const { data, max, unit } = props;

  useEffect(() => {
    const el = box.current!;
    const accent = cssVar('--accent');
    const muted = cssVar('--muted');
    const grid = { stroke: cssVar('--line'), width: 1 };
    const chart = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height: 160,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, _min, dataMax) => [0, Math.max(max, dataMax) || 1] } },
        axes: [
          { stroke: muted, grid, ticks: grid },
          {
            stroke: muted,
            grid,
            ticks: grid,
            size: 64,
            values: (_u, ticks) => ticks.map((t) => tick(t, unit)),
          },
        ],
        series: [{}, { label: unit, stroke: accent, width: 2, fill: `${accent}22`, points: { show: false } }],
      },
      [[], []],
      el,
    );
    plot.current = chart;
    const observer = new ResizeObserver(() =>
      chart.setSize({ width: Math.max(200, el.clientWidth), height: 160 }),
    );
    observer.observe(el);
    return () => {
      observer.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [max, unit]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data, max, unit]);

  return (
    <figure className="chart card" aria-labelledby={captionId}>
      <figcaption id={captionId}>
        <strong>{props.title}</strong>
        <span className="muted">{props.latest}</span>
      </figcaption>
      <div
        ref={box}
        className="chart-canvas"
        role="img"
        aria-label={`${props.description}; now ${props.latest}`}
        data-testid={`chart-${props.title.toLowerCase()}`}
      />
    </figure>
  );
}
