// Where a restore through the agent loses time to a bare `runsc restore` (issue 13): the same idle
// process checkpointed and restored under one difference at a time, from the bench's bare sandbox
// (bench/raw-runsc.ts) to the agent's full invocation (its flags, its OCI spec from oci-spec.ts, its
// cgroups, a netns with an addressed interface, envd itself). Variants run round-robin, so machine
// noise hits them alike. Run under the e2e lock.
// Usage: flock /tmp/wrenn-e2e.lock npx tsx bench/restore-bisect.ts [--rounds 10]
import { mkdir, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';
import { buildOciSpec } from '@wrenn/agent';
import { installDir, repoRoot } from '../test/e2e/support/agent-process.js';
import { runDetached } from './raw-runsc.js';
import { printPercentiles, timed } from './stats.js';

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
};
const rounds = Number(arg('--rounds', '10')) || 10;
const only = arg('--only', '');
const warmups = 2;
const runsc = path.join(installDir, 'bin/runsc');
const baseRootfs = path.join(installDir, 'images/base/rootfs');
const CGROUP_PARENT = 'wrenn-bisect';
const IDLE_NODE = ['/usr/bin/node', '-e', 'setInterval(() => {}, 1000)'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Variant {
  name: string;
  flags: 'bare' | 'agent';
  spec: 'bare' | 'agent-no-cgroup' | 'agent';
  netns: 'empty' | 'slot';
  init: 'idle-node' | 'envd';
  /** Mount destinations taken out of the agent's spec (to find the costly ones). */
  drop?: string[];
}

const noCg = { flags: 'agent', spec: 'agent-no-cgroup', netns: 'empty', init: 'idle-node' } as const;
const allVariants: Variant[] = [
  { name: 'bare (bench baseline)', flags: 'bare', spec: 'bare', netns: 'empty', init: 'idle-node' },
  { name: '+ agent flags', flags: 'agent', spec: 'bare', netns: 'empty', init: 'idle-node' },
  { name: '+ agent spec, no cgroup', ...noCg },
  { name: '+ cgroup limits', flags: 'agent', spec: 'agent', netns: 'empty', init: 'idle-node' },
  { name: '+ slot-like netns', flags: 'agent', spec: 'agent', netns: 'slot', init: 'idle-node' },
  { name: '+ envd (= agent)', flags: 'agent', spec: 'agent', netns: 'slot', init: 'envd' },
  { name: 'spec, no cgroup, − cgroupfs', ...noCg, drop: ['/sys/fs/cgroup'] },
  { name: 'spec, no cgroup, − sysfs, cgroupfs', ...noCg, drop: ['/sys', '/sys/fs/cgroup'] },
  { name: 'spec, no cgroup, − /dev tmpfs, pts, shm', ...noCg, drop: ['/dev', '/dev/pts', '/dev/shm'] },
  {
    name: 'spec, no cgroup, − 5 binds (tini…hosts)',
    ...noCg,
    drop: ['/opt/wrenn/bin/tini', '/opt/wrenn/envd', '/tmp', '/etc/resolv.conf', '/etc/hosts'],
  },
  { name: 'spec, no cgroup, − /tmp bind', ...noCg, drop: ['/tmp'] },
];
// --only 0,2,5: the variants by index (default: the first six, the main bisection).
const chosen = (only ? only.split(',').map(Number) : [0, 1, 2, 3, 4, 5]).filter((i) => allVariants[i]);
const variants = chosen.map((i) => allVariants[i]!);

interface Bundle {
  v: Variant;
  index: number;
  dir: string;
  root: string;
  rootfs: string;
  netns: string;
  id: string;
  restores: number[];
  checkpoints: number[];
}

function flagsOf(b: Bundle): string[] {
  const base = [`--root=${b.root}`, '--network=sandbox', '--overlay2=none'];
  return b.v.flags === 'bare' ? base : [...base, '--platform=systrap', '--net-disconnect-ok'];
}

async function prepare(v: Variant, index: number): Promise<Bundle> {
  const dir = path.join(installDir, `bench-bisect-${index}`);
  const b: Bundle = {
    v,
    index,
    dir,
    root: path.join(dir, 'state'),
    rootfs: path.join(dir, 'rootfs'),
    netns: `wrenn-bisect-${index}`,
    id: `bisect${index}-0`,
    restores: [],
    checkpoints: [],
  };
  await cleanup(b);
  for (const d of ['upper', 'work', 'rootfs', 'tmp']) await mkdir(path.join(dir, d), { recursive: true });
  await writeFile(path.join(dir, 'resolv.conf'), '');
  await writeFile(path.join(dir, 'hosts'), '127.0.0.1 localhost\n');
  const overlay = `lowerdir=${baseRootfs},upperdir=${dir}/upper,workdir=${dir}/work`;
  await exec(['mount', '-t', 'overlay', 'overlay', '-o', overlay, b.rootfs]);
  await exec(['ip', 'netns', 'add', b.netns]);
  if (v.netns === 'slot') {
    // What the agent's slot holds when runsc starts: eth0 addressed (runsc adopts it), gw0 not yet.
    const inNs = (args: string) => exec(['ip', '-n', b.netns, ...args.split(' ')]);
    await inNs('link set lo up');
    await inNs('link add eth0 address 02:00:00:00:00:15 type veth peer name gw0');
    await inNs('addr add 169.254.0.21/30 dev eth0');
    await inNs('link set eth0 up');
    await inNs('link set gw0 up');
    await inNs('route add default via 169.254.0.22 dev eth0');
  }
  const netnsPath = `/var/run/netns/${b.netns}`;
  let spec: Record<string, unknown>;
  if (v.spec === 'bare') {
    spec = {
      ociVersion: '1.0.2',
      process: {
        args: IDLE_NODE,
        cwd: '/',
        env: ['PATH=/usr/bin:/bin', 'HOME=/root'],
        user: { uid: 0, gid: 0 },
      },
      root: { path: b.rootfs, readonly: false },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { source: '/usr/bin/node', destination: '/usr/bin/node', type: 'bind', options: ['rbind', 'ro'] },
      ],
      linux: { namespaces: [{ type: 'pid' }, { type: 'network', path: netnsPath }, { type: 'mount' }] },
    };
  } else {
    const guest = '/opt/wrenn';
    spec = buildOciSpec(
      {
        id: b.id,
        rootfs: b.rootfs,
        bundleDir: dir,
        logFile: path.join(dir, 'run.log'),
        netnsPath,
        vcpus: 1,
        memoryMb: 512,
        pidsLimit: 4096,
        hostname: 'wrenn',
        mounts: [
          {
            source: process.execPath,
            destination: v.init === 'envd' ? `${guest}/bin/node` : '/usr/bin/node',
            readonly: true,
          },
          { source: '/usr/bin/tini-static', destination: `${guest}/bin/tini`, readonly: true },
          { source: path.join(repoRoot, 'apps/envd/dist'), destination: `${guest}/envd`, readonly: true },
          { source: path.join(dir, 'tmp'), destination: '/tmp', readonly: false },
          { source: path.join(dir, 'resolv.conf'), destination: '/etc/resolv.conf', readonly: false },
          { source: path.join(dir, 'hosts'), destination: '/etc/hosts', readonly: false },
        ],
        init: {
          args:
            v.init === 'envd'
              ? [`${guest}/bin/tini`, '--', `${guest}/bin/node`, `${guest}/envd/envd.mjs`]
              : IDLE_NODE,
          env: [
            'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
            'HOME=/root',
            'ENVD_PORT=49983',
            'ENVD_TASKS_MAX=4096',
          ],
          cwd: '/',
        },
      },
      CGROUP_PARENT,
    ) as Record<string, unknown>;
    if (v.drop) {
      spec.mounts = (spec.mounts as { destination: string }[]).filter(
        (m) => !v.drop!.includes(m.destination),
      );
    }
    if (v.spec === 'agent-no-cgroup') {
      const linux = spec.linux as Record<string, unknown>;
      delete linux.cgroupsPath;
      delete linux.resources;
    }
  }
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(spec));
  await runDetached([runsc, ...flagsOf(b), 'run', '-bundle', dir, '-detach', b.id], dir);
  return b;
}

async function round(b: Bundle, i: number, keep: boolean): Promise<void> {
  const image = path.join(b.dir, `image${i}`);
  await mkdir(image);
  const [, c] = await timed(() => exec([runsc, ...flagsOf(b), 'checkpoint', `--image-path=${image}`, b.id]));
  await removeCgroup(b.id);
  const prev = image;
  b.id = `bisect${b.index}-${i + 1}`;
  const argv = [runsc, ...flagsOf(b), 'restore', `--image-path=${image}`, '--background'];
  const [, r] = await timed(() => runDetached([...argv, '-bundle', b.dir, '-detach', b.id], b.dir));
  if (keep) {
    b.checkpoints.push(c);
    b.restores.push(r);
  }
  await rm(prev, { recursive: true, force: true });
}

async function removeCgroup(id: string): Promise<void> {
  for (const c of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    // Without cgroupsPath runsc makes /<id> under each controller; a checkpoint leaves it.
    for (const dir of [path.join(CGROUP_PARENT, id), id]) {
      await rmdir(path.join('/sys/fs/cgroup', c, dir)).catch(() => undefined);
    }
  }
}

async function cleanup(b: Bundle): Promise<void> {
  const ids = await exec([runsc, `--root=${b.root}`, 'list', '--quiet'], { allowFailure: true });
  for (const id of ids.stdout.split('\n').filter(Boolean)) {
    await exec([runsc, `--root=${b.root}`, 'delete', '--force', id], { allowFailure: true });
    await removeCgroup(id);
  }
  await exec(['ip', 'netns', 'del', b.netns], { allowFailure: true });
  for (const m of [b.rootfs, path.join(b.root, 'null-netns')]) {
    await exec(['umount', '-l', m], { allowFailure: true });
  }
  await rm(b.dir, { recursive: true, force: true });
}

const bundles: Bundle[] = [];
try {
  for (const [i, v] of variants.entries()) bundles.push(await prepare(v, chosen[i]!));
  await sleep(3000);
  for (let i = 0; i < warmups + rounds; i++) {
    for (const b of bundles) await round(b, i, i >= warmups);
    process.stderr.write('.');
  }
  process.stderr.write('\n');
  printPercentiles(
    `runsc restore (ms), ${rounds} rounds, variants round-robin`,
    bundles.map((b) => [b.v.name, b.restores, 'ms']),
    1,
  );
  printPercentiles(
    'runsc checkpoint (ms)',
    bundles.map((b) => [b.v.name, b.checkpoints, 'ms']),
    1,
  );
} finally {
  for (const b of bundles) await cleanup(b);
  for (const c of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await rmdir(path.join('/sys/fs/cgroup', c, CGROUP_PARENT)).catch(() => undefined);
  }
}
