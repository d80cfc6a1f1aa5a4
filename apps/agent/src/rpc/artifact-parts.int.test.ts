import { create } from '@bufbuild/protobuf';
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import { packEntries, unpackInto } from '../storage/artifact-stream.js';
import { DataLayout } from '../storage/layout.js';
import { TemplateStore } from '../storage/templates.js';
import { exportParts, importParts } from './artifact-parts.js';

// Real tar on real files: what one host exports, another receives, byte for byte, or not at all.
describe('artifact transfer (tar stream, digest, staging)', () => {
  let root: string;
  let from: TemplateStore;
  let to: TemplateStore;
  let toLayout: DataLayout;
  const ref = create(hostagent.ArtifactRefSchema, {
    kind: hostagent.ArtifactKind.TEMPLATE,
    name: 'snap-one',
  });

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'wrenn-artifact-'));
    from = new TemplateStore(new DataLayout(path.join(root, 'a')));
    toLayout = new DataLayout(path.join(root, 'b'));
    to = new TemplateStore(toLayout);
    await from.stage('snap-one', async (dir) => {
      await mkdir(path.join(dir, 'checkpoint'));
      await writeFile(path.join(dir, 'checkpoint', 'pages.img'), Buffer.alloc(3 << 20, 7));
      // A disk image as sandboxes have: large, nearly all hole.
      await writeFile(path.join(dir, 'disk.ext4'), 'superblock');
      await truncate(path.join(dir, 'disk.ext4'), 2 * 1024 ** 3);
      return {
        kind: 'snapshot',
        name: 'snap-one',
        baseImage: 'base',
        vcpus: 1,
        memoryMb: 512,
        diskMb: 2048,
        createdAt: new Date().toISOString(),
        sourceSandbox: 'sbx',
        envdToken: 'token',
      };
    });
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** The export as the import sees it, with `tamper` applied to each message. */
  async function* relay(
    tamper: (m: hostagent.ImportArtifactRequest, i: number) => hostagent.ImportArtifactRequest | undefined = (
      m,
    ) => m,
  ): AsyncGenerator<hostagent.ImportArtifactRequest> {
    const { dir, entries } = await from.exportable('snap-one');
    let i = 0;
    for await (const message of exportParts(ref, packEntries(dir, entries))) {
      const out = tamper(create(hostagent.ImportArtifactRequestSchema, { part: message.part }), i++);
      if (!out) return;
      yield out;
    }
  }

  async function receive(requests: AsyncIterable<hostagent.ImportArtifactRequest>) {
    const { target, chunks, verify } = await importParts(requests);
    expect(target).toEqual({ kind: 'template', name: 'snap-one' });
    return to.receive(target.name, async (staging) => verify(await unpackInto(staging, chunks)));
  }

  it('copies the files whole, and the sparse disk stays sparse', async () => {
    const template = await receive(relay());
    expect(template.kind).toBe('snapshot');
    const disk = await stat(path.join(template.dir, 'disk.ext4'));
    expect(disk.size).toBe(2 * 1024 ** 3);
    expect(disk.blocks * 512).toBeLessThan(1 << 20);
    const pages = await readFile(path.join(template.dir, 'checkpoint', 'pages.img'));
    expect(pages.equals(Buffer.alloc(3 << 20, 7))).toBe(true);
  });

  it('keeps nothing when a byte changed on the way (DATA_LOSS naming end.sha256)', async () => {
    const flipped = relay((m) => {
      if (m.part?.part.case === 'chunk' && m.part.part.value.byteLength > 600) {
        const copy = Buffer.from(m.part.part.value);
        copy.writeUInt8(copy.readUInt8(600) ^ 1, 600);
        m.part.part.value = copy;
      }
      return m;
    });
    const err = await receive(flipped).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect([Code.DataLoss, Code.Unknown]).toContain((err as ConnectError).code);
    expect(String((err as ConnectError).message)).toMatch(/sha256|unpacking/);
    await expect(to.resolve('snap-one')).rejects.toThrow(/not found/i);
    expect(await readdir(toLayout.templatesDir)).toEqual([]);
  });

  it('keeps nothing when the stream stops before its end (ABORTED)', async () => {
    const cut = relay((m) => (m.part?.part.case === 'end' ? undefined : m));
    const err = ConnectError.from(await receive(cut).catch((e: unknown) => e));
    expect(err.code).toBe(Code.Aborted);
    expect(await readdir(toLayout.templatesDir)).toEqual([]);
  });

  it('refuses a name already taken (ALREADY_EXISTS) and a header that is not first', async () => {
    await receive(relay());
    const again = ConnectError.from(await receive(relay()).catch((e: unknown) => e));
    expect(again.code).toBe(Code.AlreadyExists);
    const headless = relay((m, i) => (i === 0 ? undefined : m));
    const err = ConnectError.from(await importParts(headless).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.message).toMatch(/header/);
  });

  it('will not export a recipe image (every host builds its own)', async () => {
    await mkdir(path.join(root, 'a', 'images', 'base', 'rootfs'), { recursive: true });
    const err = ConnectError.from(await from.exportable('base').catch((e: unknown) => e));
    expect(err.code).toBe(Code.FailedPrecondition);
  });
});
