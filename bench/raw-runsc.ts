// A bare runsc sandbox for baselines: the base image through an overlay, an empty netns, one process.
// No envd, no agent: the floor the agent builds on.
import { spawn } from 'node:child_process';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exec } from '@wrenn/core';
import { installDir } from '../test/e2e/support/agent-process.js';

const runsc = path.join(installDir, 'bin/runsc');
const baseRootfs = path.join(installDir, 'images/base/rootfs');
const NETNS = 'wrenn-bench';

export interface RawBundle {
  dir: string;
  root: string;
  rootfs: string;
}

export async function prepareRawBundle(
  name: string,
  args: string[],
  binds: { source: string; destination: string }[] = [],
): Promise<RawBundle> {
  const dir = path.join(installDir, name);
  const bundle = { dir, root: path.join(dir, 'state'), rootfs: path.join(dir, 'rootfs') };
  await cleanupRawBundle(bundle);
  for (const d of ['upper', 'work', 'rootfs']) await mkdir(path.join(dir, d), { recursive: true });
  const overlay = `lowerdir=${baseRootfs},upperdir=${dir}/upper,workdir=${dir}/work`;
  await exec(['mount', '-t', 'overlay', 'overlay', '-o', overlay, bundle.rootfs]);
  await exec(['ip', 'netns', 'add', NETNS]);
  const spec = {
    ociVersion: '1.0.2',
    process: { args, cwd: '/', env: ['PATH=/usr/bin:/bin', 'HOME=/root'], user: { uid: 0, gid: 0 } },
    root: { path: bundle.rootfs, readonly: false },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      ...binds.map((b) => ({ ...b, type: 'bind', options: ['rbind', 'ro'] })),
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network', path: `/var/run/netns/${NETNS}` }, { type: 'mount' }],
    },
  };
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(spec));
  return bundle;
}

export function rawFlags(bundle: RawBundle): string[] {
  return [`--root=${bundle.root}`, '--network=sandbox', '--overlay2=none'];
}

// `runsc run|restore -detach` hands its stdout/stderr to the sandbox for its whole life: give it a
// file and wait for the process to exit, never for its output to end (as the agent's driver does).
export async function runDetached(argv: string[], dir: string): Promise<void> {
  const log = await open(path.join(dir, 'run.log'), 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log.fd, log.fd] });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) throw new Error(`${argv.join(' ')} exited with ${code}`);
  } finally {
    await log.close();
  }
}

// Also runs first: an interrupted earlier run may have left its sandboxes, netns and mounts.
export async function cleanupRawBundle({ dir, root, rootfs }: RawBundle): Promise<void> {
  const ids = await exec([runsc, `--root=${root}`, 'list', '--quiet'], { allowFailure: true });
  for (const id of ids.stdout.split('\n').filter(Boolean)) {
    await exec([runsc, `--root=${root}`, 'delete', '--force', id], { allowFailure: true });
  }
  await exec(['ip', 'netns', 'del', NETNS], { allowFailure: true });
  for (const m of [rootfs, path.join(root, 'null-netns')]) {
    await exec(['umount', '-l', m], { allowFailure: true });
  }
  await rm(dir, { recursive: true, force: true });
}
