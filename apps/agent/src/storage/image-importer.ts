import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Code, ConnectError, errorMessage, type Logger } from '@wrenn/core';
import type { EnvdRuntimeBundle } from './envd-runtime.js';
import { prepareImageRootfs } from './image-rootfs.js';
import { formatImageReference, type ImageReference } from './image-reference.js';
import { pullImage } from './image-pull.js';
import type { ImageSource, Template, TemplateStore } from './templates.js';

export interface ImportImageParams {
  name: string;
  ref: ImageReference;
  credentials?: { username: string; password: string };
}

/**
 * ImportImage: an image from a registry becomes an image template (docs/templates.md). The pull, the
 * unpack and the changes that make it bootable all happen in the template's staging directory, so a
 * failure, a cancel or a crash leaves nothing under the name (the janitor removes a crash's staging
 * directory at the next start).
 */
export class ImageImporter {
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly deps: {
      templates: TemplateStore;
      envdRuntime: Pick<EnvdRuntimeBundle, 'ensure'>;
      insecureRegistries: readonly string[];
      timeoutSec: number;
      logger: Logger;
    },
  ) {}

  async import(params: ImportImageParams, callSignal: AbortSignal): Promise<Template> {
    const { templates, logger: parent, timeoutSec } = this.deps;
    const { name, ref } = params;
    await templates.assertNameFree(name);
    if (this.inFlight.has(name))
      throw new ConnectError(
        `template ${JSON.stringify(name)} is already being imported`,
        Code.AlreadyExists,
      );
    this.inFlight.add(name);
    const image = formatImageReference(ref);
    const logger = parent.child({ template: name, image });
    const started = Date.now();
    const deadline = AbortSignal.timeout(timeoutSec * 1000);
    const signal = AbortSignal.any([callSignal, deadline]);
    try {
      // A host that cannot make the runtime finds out now, not at every create from the template.
      await this.deps.envdRuntime.ensure();
      return await templates.stage(name, async (dir) => {
        const workDir = path.join(dir, 'pull');
        await mkdir(workDir, { mode: 0o700 });
        const rootfs = path.join(dir, 'rootfs');
        const pulled = await pullImage({
          ref,
          credentials: params.credentials,
          insecureRegistries: this.deps.insecureRegistries,
          workDir,
          rootfs,
          signal,
          remainingMs: () => timeoutSec * 1000 - (Date.now() - started),
          logger,
        });
        await rm(workDir, { recursive: true, force: true });
        signal.throwIfAborted();
        const user = await prepareImageRootfs(rootfs);
        const source: ImageSource = { image, digest: pulled.digest, ...pulled.config };
        logger.info(
          {
            digest: pulled.digest,
            ms: Date.now() - started,
            user: user.added ? `added uid ${user.uid}` : 'present',
          },
          'image imported',
        );
        return { envdRuntime: 'bundled' as const, importedFrom: source };
      });
    } catch (err) {
      if (deadline.aborted)
        throw new ConnectError(
          `importing ${image} took longer than ${timeoutSec} s (WRENN_IMAGE_IMPORT_TIMEOUT_SEC); nothing was kept`,
          Code.DeadlineExceeded,
        );
      if (callSignal.aborted)
        throw new ConnectError(`importing ${image} was cancelled; nothing was kept`, Code.Canceled);
      logger.warn({ err: errorMessage(err) }, 'image import failed');
      throw err;
    } finally {
      this.inFlight.delete(name);
    }
  }
}
