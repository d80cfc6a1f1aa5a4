import { randomBytes } from 'node:crypto';
import {
  chmod,
  copyFile,
  mkdir,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { exec, type Logger } from '@wrenn/core';

/** How envd is started in a sandbox: on the image's libc (`host`, the base image) or on its own (`bundled`). */
export type EnvdRuntimeKind = 'host' | 'bundled';

const STAMP = 'wrenn-runtime.json';
const LOADER = 'ld.so';

/** One shared library `ldd` names: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6`, or the loader. */
export interface LinkedLibrary {
  name: string;
  file: string;
}

/**
 * `ldd`'s answer as (name, file) pairs, the dynamic loader under the name `ld.so`. The vDSO has no
 * file; a library `ldd` cannot find is an error (the runtime would not start).
 */
export function parseLdd(text: string): LinkedLibrary[] {
  const out: LinkedLibrary[] = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('linux-vdso') || line.startsWith('statically linked')) continue;
    const arrow = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(line);
    if (arrow) {
      if (arrow[2] === 'not found') throw new Error(`ldd: ${arrow[1]} not found`);
      out.push({ name: arrow[1]!, file: arrow[2]! });
      continue;
    }
    const loader = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (loader) out.push({ name: LOADER, file: loader[1]! });
  }
  if (!out.some((lib) => lib.name === LOADER)) throw new Error('ldd named no dynamic loader');
  return out;
}

/**
 * The host's Node.js with every shared library it (and envd's PTY addon) links against, in one
 * directory, for images whose libc is not the host's (Alpine's musl, busybox-only, distroless):
 * envd starts as `ld.so --library-path <dir> <dir>/node`, so the image's libraries are never
 * loaded into it, while the commands envd starts use the image's own. Made once per host Node
 * binary (a stamp records which), on first use.
 */
export class EnvdRuntimeBundle {
  private ready: Promise<string> | undefined;

  constructor(private readonly opts: { nodePath: string; envdDir: string; dir: string; logger: Logger }) {}

  /** The directory, made when missing or made from another Node binary. */
  ensure(): Promise<string> {
    this.ready ??= this.build().catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  /** How envd is started with this directory mounted at `guestDir`. */
  static command(guestDir: string, envdEntry: string): string[] {
    return [`${guestDir}/${LOADER}`, '--library-path', guestDir, `${guestDir}/node`, envdEntry];
  }

  private async build(): Promise<string> {
    const { dir, nodePath, logger } = this.opts;
    const addon = path.join(this.opts.envdDir, 'node_modules/node-pty/build/Release/pty.node');
    const binaries = [nodePath, ...((await stat(addon).catch(() => undefined)) ? [addon] : [])];
    const libraries = new Map<string, string>();
    for (const binary of binaries) {
      const { stdout } = await exec(['ldd', binary], { timeoutMs: 30_000 });
      for (const lib of parseLdd(stdout)) libraries.set(lib.name, lib.file);
    }
    // What is copied, not what asked for it: an envd rebuild (a new pty.node) changes nothing here,
    // and the directory stays the same files a paused sandbox's checkpoint was taken with.
    const stamp = JSON.stringify(await Promise.all([nodePath, ...libraries.values()].map(fingerprint)));
    if ((await readFile(path.join(dir, STAMP), 'utf8').catch(() => '')) === stamp) return dir;
    const parent = path.dirname(dir);
    await mkdir(parent, { recursive: true });
    // What a crash in an earlier build left.
    for (const entry of await readdir(parent))
      if (entry.startsWith(`${path.basename(dir)}.`))
        await rm(path.join(parent, entry), { recursive: true, force: true });
    const staging = `${dir}.staging-${randomBytes(4).toString('hex')}`;
    try {
      await mkdir(staging, { mode: 0o755 });
      await copyFile(nodePath, path.join(staging, 'node'));
      for (const [name, file] of libraries) await copyFile(file, path.join(staging, name));
      for (const name of ['node', ...libraries.keys()]) await chmod(path.join(staging, name), 0o755);
      // Proof that it runs on its own, before any sandbox depends on it.
      await exec(EnvdRuntimeBundle.command(staging, '--version'), { timeoutMs: 30_000 });
      await writeFile(path.join(staging, STAMP), stamp);
      const old = `${dir}.old-${randomBytes(4).toString('hex')}`;
      // Sandboxes running on the old directory keep their bind mount of it.
      await rename(dir, old).catch(() => undefined);
      await rename(staging, dir);
      await rm(old, { recursive: true, force: true });
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
    logger.info({ dir, libraries: [...libraries.keys()] }, 'envd runtime bundle made');
    return dir;
  }
}

async function fingerprint(file: string): Promise<string> {
  const info = await stat(file);
  return `${await realpath(file)}:${info.size}:${info.mtimeMs}:${info.ino}`;
}
