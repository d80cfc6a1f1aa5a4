import { readFile, statfs } from 'node:fs/promises';
import { cpus } from 'node:os';
import type { ServerResponse } from 'node:http';
import { sendJson } from './responses.js';

interface CpuSample {
  idle: number;
  total: number;
}

/** GET /metrics in E2B's shape; the control plane polls it. CPU use is measured between calls. */
export class MetricsRoute {
  private last: CpuSample | undefined;

  async handle(res: ServerResponse): Promise<void> {
    let now = await cpuSample();
    let prev = this.last;
    if (!prev) {
      // First call: no earlier sample to compare with, so take a short one.
      prev = now;
      await new Promise((r) => setTimeout(r, 100));
      now = await cpuSample();
    }
    this.last = now;
    const total = now.total - prev.total;
    const cpuUsedPct = total > 0 ? round2(100 * (1 - (now.idle - prev.idle) / total)) : 0;

    const mem = await memInfo();
    const disk = await statfs('/');
    const memUsed = mem.total - mem.available;
    sendJson(res, 200, {
      ts: Math.floor(Date.now() / 1000),
      cpu_count: cpus().length,
      cpu_used_pct: cpuUsedPct,
      mem_total: mem.total,
      mem_used: memUsed,
      mem_cache: mem.cached,
      mem_total_mib: Math.floor(mem.total / 1024 / 1024),
      mem_used_mib: Math.floor(memUsed / 1024 / 1024),
      disk_used: (disk.blocks - disk.bfree) * disk.bsize,
      disk_total: disk.blocks * disk.bsize,
    });
  }
}

async function cpuSample(): Promise<CpuSample> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { idle, total: fields.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0) };
}

async function memInfo(): Promise<{ total: number; available: number; cached: number }> {
  const values = new Map<string, number>();
  for (const line of (await readFile('/proc/meminfo', 'utf8')).split('\n')) {
    const m = /^(\w+):\s+(\d+)\s*kB/.exec(line);
    if (m?.[1] && m[2]) values.set(m[1], Number(m[2]) * 1024);
  }
  const total = values.get('MemTotal') ?? 0;
  return {
    total,
    available: values.get('MemAvailable') ?? values.get('MemFree') ?? 0,
    cached: values.get('Cached') ?? 0,
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
