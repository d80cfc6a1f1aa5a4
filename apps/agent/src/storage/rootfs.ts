import { chmod, mkdir, open, readFile, rm } from 'node:fs/promises';
import { exec, type Logger } from '@wrenn/core';
import type { SandboxPaths } from './layout.js';

/**
 * A sandbox's root filesystem: overlayfs with the template's read-only rootfs below and the
 * sandbox's own layer above. The layer lives on a sparse ext4 image of `diskMb`, so the disk limit is
 * enforced by the filesystem (ENOSPC inside the sandbox) and the whole writable state is one file,
 * which pause keeps and a snapshot copies.
 */
export async function createRootfs(paths: SandboxPaths, lowerDir: string, diskMb: number): Promise<void> {
  await createDiskImage(paths.diskImage, diskMb);
  await mountDisk(paths);
  await mkdir(paths.upper, { mode: 0o755 });
  await mkdir(paths.work, { mode: 0o755 });
  await mkdir(paths.tmp);
  await chmod(paths.tmp, 0o1777);
  await mountOverlay(paths, lowerDir);
}

/** Mounts an existing layer again (resume, or a copy of a snapshot's layer). */
export async function mountRootfs(paths: SandboxPaths, lowerDir: string): Promise<void> {
  await mountDisk(paths);
  await mountOverlay(paths, lowerDir);
}

/** Unmounts the rootfs and its disk, keeping the disk image file (a paused sandbox's layer). */
export async function unmountRootfs(paths: SandboxPaths, logger: Logger): Promise<void> {
  await unmountAllBelow(paths.rootfs, logger);
  await unmountAllBelow(paths.diskMount, logger);
}

/** Copies a disk image, holes and all (a mostly empty 4 GiB layer copies in milliseconds). */
export async function copyDiskImage(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await exec(['cp', '--sparse=always', from, to], { timeoutMs: 600_000, signal });
}

async function createDiskImage(file: string, diskMb: number): Promise<void> {
  const image = await open(file, 'w');
  try {
    await image.truncate(diskMb * 1024 * 1024);
  } finally {
    await image.close();
  }
  // No reserved blocks (the sandbox gets all of disk_mb); lazy init keeps mkfs to milliseconds.
  await exec([
    'mkfs.ext4',
    '-q',
    '-F',
    '-m',
    '0',
    '-E',
    'lazy_itable_init=1,lazy_journal_init=1,nodiscard',
    file,
  ]);
}

/**
 * Options of every mount the agent makes of a sandbox's layer on the host (its disk image, the
 * overlay over its template). The files in it are the sandbox's to write: on the host they must
 * never be a set-uid program or a device node that works. gVisor needs neither (it has its own
 * devices and its own set-uid handling). No `noexec`: gVisor maps the sandbox's binaries executable
 * straight from the host's files.
 */
export const LAYER_MOUNT_OPTIONS = ['nosuid', 'nodev'] as const;

async function mountDisk(paths: SandboxPaths): Promise<void> {
  await mkdir(paths.diskMount, { recursive: true });
  await exec([
    'mount',
    '-o',
    ['loop', 'noatime', ...LAYER_MOUNT_OPTIONS].join(','),
    paths.diskImage,
    paths.diskMount,
  ]);
}

async function mountOverlay(paths: SandboxPaths, lowerDir: string): Promise<void> {
  await mkdir(paths.rootfs, { recursive: true });
  await exec([
    'mount',
    '-t',
    'overlay',
    'overlay',
    '-o',
    [`lowerdir=${lowerDir}`, `upperdir=${paths.upper}`, `workdir=${paths.work}`, ...LAYER_MOUNT_OPTIONS].join(
      ',',
    ),
    paths.rootfs,
  ]);
}

/** Unmounts and deletes everything of the sandbox on disk. Idempotent; tolerates half-built state. */
export async function destroyRootfs(paths: SandboxPaths, logger: Logger): Promise<void> {
  await unmountAllBelow(paths.dir, logger);
  await rm(paths.dir, { recursive: true, force: true });
}

/** Unmounts every mount at or below `dir`, newest first, so stacked mounts come off in order. */
export async function unmountAllBelow(dir: string, logger: Logger): Promise<void> {
  for (const target of await mountsBelow(dir)) {
    const { exitCode, stderr } = await exec(['umount', target], { allowFailure: true });
    if (exitCode === 0) continue;
    // Busy (a process still holds a file): detach now, the kernel finishes when the last user goes.
    logger.warn({ target, stderr: stderr.trim() }, 'umount failed; detaching lazily');
    await exec(['umount', '-l', target]);
  }
}

/** Mount points at or below `dir`, most recently mounted first, from this process's mount table. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  const points = table
    .split('\n')
    .map((line) => unescapeMountPath(line.split(' ')[4] ?? ''))
    .filter((p) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`));
  // mountinfo lists mounts in the order they were made; a mount stacked on another comes later.
  return [...new Set(points.reverse())];
}

// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
