import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Code, ConnectError, failedPrecondition } from '@wrenn/core';
import { packEntries, unpackInto, type ArtifactDigest } from '../storage/artifact-stream.js';
import { sandboxPaths } from '../storage/layout.js';
import { adoptOne } from './pause-resume.js';
import type { SandboxInfo } from './record.js';
import type { Template } from '../storage/templates.js';
import type { SandboxContext } from './resources.js';

/** What a paused sandbox is on disk: enough for another host to restore it into a slot of its own. */
const PAUSED_ENTRIES = ['sandbox.json', 'checkpoint', 'disk.ext4', 'resolv.conf', 'hosts'];

/**
 * Streams a paused sandbox's checkpoint, disk and state. The sandbox's operations queue is held for
 * the whole stream, so it cannot resume (and change its disk) while its bytes are on the way; it
 * stays here, paused, until the control plane destroys it once the other host has it.
 */
export function exportPaused(
  ctx: SandboxContext,
  id: string,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array, ArtifactDigest> {
  const record = ctx.registry.find(id);
  return holding(
    (whileHeld) => ctx.registry.serially(record, whileHeld),
    async function* () {
      await record.teardown;
      if (record.state !== 'paused')
        throw failedPrecondition(`sandbox ${id} is ${record.info.status}: only a paused sandbox moves`);
      return yield* packEntries(record.paths.dir, PAUSED_ENTRIES, signal);
    },
  );
}

/** Streams a template this agent made; it cannot be deleted while it is being read. */
export async function exportTemplate(
  ctx: SandboxContext,
  name: string,
  signal?: AbortSignal,
): Promise<AsyncGenerator<Uint8Array, ArtifactDigest>> {
  const { dir, entries } = await ctx.deps.templates.exportable(name);
  return holding(
    (whileHeld) => ctx.registry.withSnapshotInUse(name, whileHeld),
    () => packEntries(dir, entries, signal),
  );
}

/** Takes a template another host exported (see `TemplateStore.receive`). */
export async function importTemplate(
  ctx: SandboxContext,
  name: string,
  chunks: AsyncIterable<Uint8Array>,
  verify: (received: ArtifactDigest) => void,
): Promise<Template> {
  const template = await ctx.deps.templates.receive(name, async (staging) =>
    verify(await unpackInto(staging, chunks)),
  );
  ctx.deps.logger.info({ template: name }, 'template copied in from another host');
  return template;
}

/** Runs `body` while `hold` is inside the callback it was given (a queue's turn, a use count). */
async function* holding<T>(
  hold: (whileHeld: () => Promise<void>) => Promise<void>,
  body: () => AsyncGenerator<Uint8Array, T>,
): AsyncGenerator<Uint8Array, T> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let entered!: () => void;
  const turn = new Promise<void>((resolve) => (entered = resolve));
  const held = hold(async () => {
    entered();
    await released;
  });
  try {
    await turn;
    return yield* body();
  } finally {
    release();
    await held;
  }
}

/**
 * Takes a paused sandbox another host exported: unpacked in the imports dir, checked by `verify`
 * (the sender's digest), moved into the sandboxes dir and adopted, paused. Nothing stays when any
 * step fails.
 */
export async function importPaused(
  ctx: SandboxContext,
  id: string,
  chunks: AsyncIterable<Uint8Array>,
  verify: (received: ArtifactDigest) => void,
): Promise<SandboxInfo> {
  const { layout } = ctx.deps;
  const paths = sandboxPaths(layout, id);
  const exists = () =>
    new ConnectError(`sandbox ${id} is already on this host`, Code.AlreadyExists, undefined, undefined);
  if (ctx.registry.has(id) || (await stat(paths.dir).catch(() => undefined))) throw exists();
  await mkdir(layout.importsDir, { recursive: true });
  const staging = path.join(layout.importsDir, `${id}-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    verify(await unpackInto(staging, chunks));
    if (ctx.registry.has(id) || (await stat(paths.dir).catch(() => undefined))) throw exists();
    await mkdir(layout.sandboxesDir, { recursive: true });
    await rename(staging, paths.dir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  const record = await adoptOne(ctx, id);
  if (!record) {
    await rm(paths.dir, { recursive: true, force: true });
    throw failedPrecondition(`sandbox ${id} arrived without a paused state`);
  }
  ctx.deps.logger.info({ sandboxId: id }, 'sandbox moved in from another host (paused)');
  return { ...record.info };
}
