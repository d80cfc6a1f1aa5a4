import { statfs } from 'node:fs/promises';
import os from 'node:os';
import type { HeartbeatRequest, HostFacts } from './control-plane-client.js';
import type { HeartbeatSandbox } from './pause-all.js';

const MB = 1024 * 1024;

/** What the host has: cores, memory, and the disk that holds the data dir. */
export async function hostFacts(dataDir: string): Promise<HostFacts> {
  const disk = await statfs(dataDir);
  return {
    arch: os.arch(),
    cpu_cores: os.availableParallelism(),
    memory_mb: Math.floor(os.totalmem() / MB),
    disk_mb: Math.floor((disk.blocks * disk.bsize) / MB),
  };
}

/** Host CPU use between two calls, from the kernel's per-CPU time counters. */
export class CpuUsage {
  private last = totals();

  /** Percent of all cores busy since the previous call (or since construction). */
  sample(): number {
    const now = totals();
    const busy = now.busy - this.last.busy;
    const all = now.all - this.last.all;
    this.last = now;
    return all > 0 ? Math.round((busy / all) * 1000) / 10 : 0;
  }
}

function totals(): { busy: number; all: number } {
  let busy = 0;
  let all = 0;
  for (const { times } of os.cpus()) {
    const sum = times.user + times.nice + times.sys + times.irq + times.idle;
    all += sum;
    busy += sum - times.idle;
  }
  return { busy, all };
}

/** A heartbeat's body: capacity, load, and every sandbox with its status. */
export async function heartbeatReport(
  dataDir: string,
  cpu: CpuUsage,
  sandboxes: HeartbeatSandbox[],
): Promise<HeartbeatRequest> {
  const facts = await hostFacts(dataDir);
  const disk = await statfs(dataDir);
  return {
    capacity: { cpu_cores: facts.cpu_cores, memory_mb: facts.memory_mb, disk_mb: facts.disk_mb },
    load: {
      cpu_pct: cpu.sample(),
      memory_used_mb: Math.floor((os.totalmem() - os.freemem()) / MB),
      disk_used_mb: Math.floor(((disk.blocks - disk.bfree) * disk.bsize) / MB),
    },
    sandboxes,
  };
}
