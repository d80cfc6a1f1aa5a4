import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';

/**
 * Everything of Wrenn that a sandbox could leave on the host, listed from the host's own tables (not
 * from the agent's bookkeeping), so a leak shows up even when the agent forgot it ever existed.
 */
export interface WrennHostState {
  netns: string[];
  interfaces: string[];
  /** Host routes through Wrenn's interfaces. */
  routes: string[];
  mounts: string[];
  runscProcesses: string[];
  iptablesRules: string[];
  sandboxDirs: string[];
  cgroups: string[];
}

export async function wrennHostState(dataDir: string): Promise<WrennHostState> {
  const netns = (await readdir('/var/run/netns').catch(() => [] as string[]))
    .filter((n) => n.startsWith('wrenn-'))
    .sort();
  const links = (await exec(['ip', '-o', 'link', 'show'])).stdout;
  const interfaces = [...links.matchAll(/^\d+: ([^:@\s]+)/gm)]
    .map((m) => m[1]!)
    // wrn-h-N (the default agent instance) and wrn<tag>-N (another instance on this host).
    .filter((n) => n.startsWith('wrn'))
    .sort();
  const routes = (await exec(['ip', '-o', 'route', 'show'])).stdout
    .split('\n')
    .filter((l) => / dev wrn/.test(l))
    .sort();
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const sandboxesDir = path.join(dataDir, 'sandboxes');
  const mounts = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${sandboxesDir}/`))
    .sort();
  const runscProcesses: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (cmdline.some((a) => a === `--root=${path.join(dataDir, 'run/runsc')}`))
      runscProcesses.push(`${pid} ${cmdline[0]}`);
  }
  const iptablesRules: string[] = [];
  for (const table of ['filter', 'nat']) {
    const { stdout } = await exec(['iptables', '-w', '5', '-t', table, '-S']);
    iptablesRules.push(
      ...stdout
        .split('\n')
        .filter((l) => l.includes('WRENN'))
        .map((l) => `${table}: ${l}`),
    );
  }
  const sandboxDirs = (await readdir(sandboxesDir).catch(() => [] as string[])).sort();
  const cgroups: string[] = [];
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    // `wrenn` (the default agent instance) and `wrenn-<tag>` (another instance on this host).
    const parents = (
      await readdir(path.join('/sys/fs/cgroup', controller)).catch(() => [] as string[])
    ).filter((name) => name === 'wrenn' || name.startsWith('wrenn-'));
    for (const parent of parents) {
      const entries = await readdir(path.join('/sys/fs/cgroup', controller, parent), {
        withFileTypes: true,
      }).catch(() => []);
      for (const entry of entries)
        if (entry.isDirectory()) cgroups.push(`${controller}/${parent}/${entry.name}`);
    }
  }
  return { netns, interfaces, routes, mounts, runscProcesses, iptablesRules, sandboxDirs, cgroups };
}

export const EMPTY_HOST_STATE: WrennHostState = {
  netns: [],
  interfaces: [],
  routes: [],
  mounts: [],
  runscProcesses: [],
  iptablesRules: [],
  sandboxDirs: [],
  cgroups: [],
};

/**
 * Retries an assertion until it passes or `timeoutMs` elapses (then throws its last failure). For
 * work the agent finishes after it answered, such as freeing a paused sandbox's runtime and slot.
 */
export async function eventually(assertion: () => Promise<void>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
