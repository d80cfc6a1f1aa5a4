import { readdir } from 'node:fs/promises';
import { create } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError, silentLogger } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import { BASE, fakeHost, type FakeHost } from '../testing/fakes.js';
import { ImageImporter } from '../storage/image-importer.js';
import { hostAgentService } from './host-agent-service.js';

let host: FakeHost;
let service: ReturnType<typeof hostAgentService>;
beforeEach(async () => {
  host = await fakeHost();
  const images = new ImageImporter({
    templates: host.templates,
    envdRuntime: { ensure: () => Promise.resolve('/fake/envd-runtime') },
    insecureRegistries: [],
    timeoutSec: 60,
    logger: silentLogger(),
  });
  service = hostAgentService(host.manager, host.templates, host.manager.ctx.deps.config, images);
  await host.manager.create({ ...BASE, id: 'sbxone01' });
});
afterEach(() => host.cleanup());

const callCtx = (signal: AbortSignal) => ({ signal }) as HandlerContext;
const cancelled = () => {
  const ac = new AbortController();
  ac.abort(new ConnectError('the caller went away', Code.Canceled));
  return ac.signal;
};

describe('the RPC layer passes the caller’s signal on', () => {
  it('pause: a caller that went away pauses nothing', async () => {
    const req = create(hostagent.PauseSandboxRequestSchema, { sandboxId: 'sbxone01' });
    await expect(service.pauseSandbox(req, callCtx(cancelled()))).rejects.toMatchObject({
      code: Code.Canceled,
    });
    expect(host.manager.get('sbxone01').status).toBe('running');
  });

  it('destroy: a caller that went away destroys nothing', async () => {
    const req = create(hostagent.DestroySandboxRequestSchema, { sandboxId: 'sbxone01' });
    await expect(service.destroySandbox(req, callCtx(cancelled()))).rejects.toMatchObject({
      code: Code.Canceled,
    });
    expect(host.manager.get('sbxone01').status).toBe('running');
  });

  it('flatten: cancelling the call stops the copy and thaws the sandbox', async () => {
    const ac = new AbortController();
    const gate = host.faults.hold('storage.copyTree');
    const req = create(hostagent.FlattenRootfsRequestSchema, { sandboxId: 'sbxone01', name: 'flat' });
    const flatten = Promise.resolve(service.flattenRootfs(req, callCtx(ac.signal))).catch((e: unknown) => e);
    await gate.reached;
    ac.abort(new ConnectError('the caller went away', Code.Canceled));
    gate.release();
    expect(((await flatten) as ConnectError).code).toBe(Code.Canceled);
    expect(host.runtime.sandboxes.get('sbxone01')?.frozen).toBe(false);
    expect(host.manager.get('sbxone01').status).toBe('running');
  });

  it('snapshot: cancelling the call stops the copy and resumes the sandbox', async () => {
    const ac = new AbortController();
    const gate = host.faults.hold('storage.copyDiskImage');
    const req = create(hostagent.CreateSnapshotRequestSchema, { sandboxId: 'sbxone01', name: 'snap' });
    const snapshot = Promise.resolve(service.createSnapshot(req, callCtx(ac.signal))).catch(
      (e: unknown) => e,
    );
    await gate.reached;
    ac.abort(new ConnectError('the caller went away', Code.Canceled));
    gate.release();
    expect(((await snapshot) as ConnectError).code).toBe(Code.Canceled);
    expect(host.manager.get('sbxone01').status).toBe('running');
  });
});

describe('interactive commands', () => {
  it('input to a command that is not interactive is refused as not found', async () => {
    const req = create(hostagent.SendExecInputRequestSchema, { sandboxId: 'sbxone01', pid: 7 });
    await expect(service.sendExecInput(req, callCtx(new AbortController().signal))).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });

  it('a resize of a command without a terminal is refused', async () => {
    const forget = host.manager.interactive.register('sbxone01', 7, { pty: false, user: 'root' });
    const req = create(hostagent.ResizeExecPtyRequestSchema, {
      sandboxId: 'sbxone01',
      pid: 7,
      size: { cols: 80, rows: 24 },
    });
    await expect(service.resizeExecPty(req, callCtx(new AbortController().signal))).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
    forget();
    await expect(service.resizeExecPty(req, callCtx(new AbortController().signal))).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });
});

describe('ListDir, before envd is asked', () => {
  const live = () => callCtx(new AbortController().signal);
  const listReq = (init: { sandboxId?: string; path?: string; depth?: number }) =>
    create(hostagent.ListDirRequestSchema, { sandboxId: 'sbxone01', path: '/home/user', ...init });

  it('a bad depth or path is invalid_argument naming the field', async () => {
    await expect(service.listDir(listReq({ depth: 11 }), live())).rejects.toThrow(/depth: must be 1 to 10/);
    await expect(service.listDir(listReq({ path: '' }), live())).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'path: is required',
    });
  });

  it('a paused or unknown sandbox is refused, not listed', async () => {
    await host.manager.pause('sbxone01');
    await expect(service.listDir(listReq({}), live())).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
    await expect(service.listDir(listReq({ sandboxId: 'sbxnone01' }), live())).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });
});

describe('ImportImage, before any pull', () => {
  const importReq = (name: string, image: string) =>
    create(hostagent.ImportImageRequestSchema, { name, image });
  const live = () => callCtx(new AbortController().signal);

  it('an existing name is already_exists, a bad reference invalid_argument naming image', async () => {
    await expect(service.importImage(importReq('base', 'debian:12'), live())).rejects.toMatchObject({
      code: Code.AlreadyExists,
    });
    await expect(service.importImage(importReq('new', 'Debian!'), live())).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/^image: /) as unknown,
    });
  });

  it('a host that cannot make the envd runtime fails the import, and stages nothing', async () => {
    const images = new ImageImporter({
      templates: host.templates,
      envdRuntime: { ensure: () => Promise.reject(new Error('ldd: libfoo.so.1 not found')) },
      insecureRegistries: [],
      timeoutSec: 60,
      logger: silentLogger(),
    });
    const broken = hostAgentService(host.manager, host.templates, host.manager.ctx.deps.config, images);
    await expect(broken.importImage(importReq('new', 'debian:12'), live())).rejects.toThrow(/libfoo/);
    expect(await readdir(host.layout.templatesDir).catch(() => [])).toEqual([]);
  });
});
