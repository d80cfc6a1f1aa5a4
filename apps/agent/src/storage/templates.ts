import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Code, ConnectError, exec, failedPrecondition, invalidArgument, notFound } from '@wrenn/core';
import type { EnvdRuntimeKind } from './envd-runtime.js';
import type { DataLayout } from './layout.js';

// An allowlist, not a denylist: a name is a single path segment that cannot climb out (`..`).
const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const META_FILE = 'template.json';
const STAGING_PREFIX = '.staging-';

export function validateTemplateName(name: string, field = 'template'): void {
  if (!TEMPLATE_NAME.test(name)) {
    throw invalidArgument(
      field,
      `must match ${TEMPLATE_NAME.source} (lowercase letters, digits, '-', '_'), got ${JSON.stringify(name)}`,
    );
  }
}

/** What the agent records about a snapshot: the sizes are fixed, the checkpoint was taken with them. */
export interface SnapshotMeta {
  kind: 'snapshot';
  name: string;
  /** The image template below the snapshot's writable layer. */
  baseImage: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  createdAt: string;
  sourceSandbox: string;
  /** envd's access token inside the checkpoint: restored sandboxes are re-keyed with it. */
  envdToken: string;
}

/** Where an imported image came from, and its OCI config (ImportImage, image-importer.ts). */
export interface ImageSource {
  image: string;
  digest: string;
  env: string[];
  workdir: string;
  user: string;
}

interface ImageMeta {
  kind: 'image';
  name: string;
  createdAt: string;
  flattenedFrom?: string;
  /** Absent: `host` (envd on the image's own glibc, as in `base`). */
  envdRuntime?: EnvdRuntimeKind;
  importedFrom?: ImageSource;
}

export type Template =
  | {
      kind: 'image';
      name: string;
      rootfs: string;
      createdAt: Date;
      dir: string;
      madeHere: boolean;
      envdRuntime: EnvdRuntimeKind;
      source?: ImageSource;
    }
  | {
      kind: 'snapshot';
      name: string;
      meta: SnapshotMeta;
      dir: string;
      checkpoint: string;
      diskImage: string;
    };

export interface TemplateSummary {
  template: Template;
  sizeBytes: number;
}

/**
 * Templates by name. Images built from recipes live in the images dir (shared, read-only to the
 * agent); templates the agent makes (snapshots, flattened images) live in its data dir, each a
 * directory with a template.json, written under a staging name and renamed into place when complete.
 */
export class TemplateStore {
  constructor(private readonly layout: DataLayout) {}

  async resolve(name: string, field = 'template'): Promise<Template> {
    validateTemplateName(name, field);
    const dir = this.layout.templateDir(name);
    const meta = await readMeta(dir);
    if (meta?.kind === 'snapshot') {
      return {
        kind: 'snapshot',
        name,
        meta,
        dir,
        checkpoint: path.join(dir, 'checkpoint'),
        diskImage: path.join(dir, 'disk.ext4'),
      };
    }
    if (meta?.kind === 'image') {
      return {
        kind: 'image',
        name,
        rootfs: path.join(dir, 'rootfs'),
        createdAt: new Date(meta.createdAt),
        dir,
        madeHere: true,
        envdRuntime: meta.envdRuntime ?? 'host',
        source: meta.importedFrom,
      };
    }
    const rootfs = this.layout.imageRootfs(name);
    const info = await stat(rootfs).catch(() => undefined);
    if (!info?.isDirectory()) throw notFound('template', name);
    return {
      kind: 'image',
      name,
      rootfs,
      createdAt: info.mtime,
      dir: path.dirname(rootfs),
      madeHere: false,
      envdRuntime: 'host',
    };
  }

  /** The root filesystem of an image template (a snapshot has none of its own). */
  async imageRootfs(name: string, field = 'template'): Promise<string> {
    const template = await this.resolve(name, field);
    if (template.kind !== 'image') throw failedPrecondition(`template ${name} is a snapshot, not an image`);
    return template.rootfs;
  }

  async assertNameFree(name: string, field = 'name'): Promise<void> {
    validateTemplateName(name, field);
    const taken = await this.resolve(name).then(
      () => true,
      () => false,
    );
    if (taken) throw new ConnectError(`template ${JSON.stringify(name)} already exists`, Code.AlreadyExists);
  }

  /**
   * Builds a template in a staging directory and moves it into place only when `fill` succeeded, so a
   * crash or failure never leaves a half-made template under its name.
   */
  async stage(
    name: string,
    fill: (dir: string) => Promise<SnapshotMeta | Omit<ImageMeta, 'kind' | 'name' | 'createdAt'>>,
  ): Promise<Template> {
    return this.intoPlace(name, async (staging) => {
      const filled = await fill(staging);
      const meta: SnapshotMeta | ImageMeta =
        'kind' in filled ? filled : { kind: 'image', name, createdAt: new Date().toISOString(), ...filled };
      await writeFile(path.join(staging, META_FILE), JSON.stringify(meta, null, 1), { mode: 0o600 });
    });
  }

  /**
   * Takes a template another host made (what `exportable` names, unpacked by `unpack`), staged like
   * one made here; its template.json must name it.
   */
  async receive(name: string, unpack: (dir: string) => Promise<void>): Promise<Template> {
    return this.intoPlace(name, async (staging) => {
      await unpack(staging);
      const meta = await readMeta(staging).catch(() => undefined);
      if (meta?.name !== name || (meta.kind !== 'snapshot' && meta.kind !== 'image'))
        throw invalidArgument(
          'header.name',
          `the template received is not ${name} (no matching ${META_FILE})`,
        );
    });
  }

  /** The directory and entries of a template this agent made, for another host to receive. */
  async exportable(name: string, field = 'name'): Promise<{ dir: string; entries: string[] }> {
    const template = await this.resolve(name, field);
    if (template.kind === 'image' && !template.madeHere)
      throw failedPrecondition(
        `template ${name} is built from a recipe (images/${name}): every host builds its own`,
      );
    return { dir: template.dir, entries: (await readdir(template.dir)).sort() };
  }

  private async intoPlace(name: string, fill: (staging: string) => Promise<void>): Promise<Template> {
    await this.assertNameFree(name);
    await mkdir(this.layout.templatesDir, { recursive: true });
    const staging = path.join(
      this.layout.templatesDir,
      `${STAGING_PREFIX}${name}-${randomBytes(4).toString('hex')}`,
    );
    // Root's only: a template holds files a sandbox's root made (a flattened rootfs, a snapshot's
    // layer) or an image's, setuid binaries included, which the host's other users must not reach.
    await mkdir(staging, { mode: 0o700 });
    try {
      await fill(staging);
      await this.assertNameFree(name);
      await rename(staging, this.layout.templateDir(name));
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
    return this.resolve(name);
  }

  /** Deletes a template this agent made. Recipe-built images are not the agent's to delete. */
  async delete(name: string, field = 'name'): Promise<void> {
    const template = await this.resolve(name, field);
    if (template.kind === 'image' && !template.madeHere) {
      throw failedPrecondition(
        `template ${name} is built from a recipe (images/${name}); the agent does not delete it`,
      );
    }
    // Renamed away first: from that instant the name resolves to nothing, even if removal is slow.
    const doomed = path.join(
      this.layout.templatesDir,
      `${STAGING_PREFIX}deleted-${name}-${randomBytes(4).toString('hex')}`,
    );
    await rename(template.dir, doomed);
    await rm(doomed, { recursive: true, force: true });
  }

  /** Every template, by name (no sizes: measuring them reads every file). */
  async all(): Promise<Template[]> {
    const names = new Set<string>();
    for (const dir of [this.layout.templatesDir, this.layout.imagesDir]) {
      for (const entry of await readdir(dir).catch(() => [] as string[])) {
        if (TEMPLATE_NAME.test(entry)) names.add(entry);
      }
    }
    const out: Template[] = [];
    for (const name of [...names].sort()) {
      const template = await this.resolve(name).catch(() => undefined);
      if (template) out.push(template);
    }
    return out;
  }

  async list(): Promise<TemplateSummary[]> {
    return Promise.all((await this.all()).map((template) => this.summarize(template)));
  }

  async summarize(template: Template): Promise<TemplateSummary> {
    return { template, sizeBytes: await diskUsage(template.dir) };
  }

  /** Staging directories a crash left behind (start-up cleanup). */
  async removeStaging(): Promise<string[]> {
    const leftovers = (await readdir(this.layout.templatesDir).catch(() => [] as string[])).filter((e) =>
      e.startsWith(STAGING_PREFIX),
    );
    for (const entry of leftovers) {
      const dir = path.join(this.layout.templatesDir, entry);
      // A copy the previous agent started (a flatten's, an import's) outlives it and keeps writing
      // here: stopped first, or the removal races it (ENOTEMPTY). Whatever is still left then goes
      // at the next start; it never stops this one.
      await killWritersOf(dir);
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }).catch(() => undefined);
    }
    return leftovers;
  }
}

async function readMeta(dir: string): Promise<SnapshotMeta | ImageMeta | undefined> {
  const text = await readFile(path.join(dir, META_FILE), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as SnapshotMeta | ImageMeta);
}

/** Bytes allocated on disk (sparse files count for what they hold, not their length). */
async function diskUsage(dir: string): Promise<number> {
  const { stdout } = await exec(['du', '-s', '--block-size=1', dir], { allowFailure: true });
  return Number(stdout.split('\t')[0]) || 0;
}

/** SIGKILLs every process whose command line names `dir` (or a path inside it). */
async function killWritersOf(dir: string): Promise<void> {
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args.some((a) => a === dir || a.startsWith(`${dir}/`))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  }
}
