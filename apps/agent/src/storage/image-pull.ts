import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  Code,
  ConnectError,
  errorMessage,
  exec,
  ExecError,
  failedPrecondition,
  type Logger,
} from '@wrenn/core';
import {
  formatImageReference,
  isInsecureRegistry,
  pinnedReference,
  type ImageReference,
} from './image-reference.js';

/** What the OCI image config says about running the image (its `config` object). */
export interface ImageRunConfig {
  env: string[];
  workdir: string;
  user: string;
}

export interface PullRequest {
  ref: ImageReference;
  credentials?: { username: string; password: string };
  /** `WRENN_INSECURE_REGISTRIES`. */
  insecureRegistries: readonly string[];
  /** An empty directory of the caller's: the pull's files (layout, auth file, temp) live here. */
  workDir: string;
  /** Where the root filesystem goes (must not exist). */
  rootfs: string;
  signal: AbortSignal;
  /** What remains of the caller's time limit, read before each step. */
  remainingMs: () => number;
  /** Names the template and the image already (a child logger). */
  logger: Logger;
}

export interface PulledImage {
  /** The digest of the manifest (or index) the reference named: what `docker pull` reports. */
  digest: string;
  config: ImageRunConfig;
  layers: number;
  compressedBytes: number;
}

const LAYOUT_TAG = 'image';
const GOARCH: Partial<Record<string, string>> = { x64: 'amd64', arm64: 'arm64' };

/**
 * Pulls an image with skopeo into an OCI layout under `workDir` and unpacks its root filesystem with
 * umoci (both Debian packages; decisions.md). The tag is resolved to a digest first and the copy made
 * by that digest, so the digest reported is the one unpacked even if the tag moves meanwhile.
 * Credentials travel in a 0600 auth file (never argv), removed as soon as skopeo is done.
 */
export async function pullImage(req: PullRequest): Promise<PulledImage> {
  const { ref, workDir, logger } = req;
  const name = formatImageReference(ref);
  const insecure = isInsecureRegistry(ref.registry, req.insecureRegistries);
  const authFile = path.join(workDir, 'auth.json');
  if (req.credentials) {
    const auth = Buffer.from(`${req.credentials.username}:${req.credentials.password}`).toString('base64');
    await writeFile(authFile, JSON.stringify({ auths: { [ref.registry]: { auth } } }), { mode: 0o600 });
  }
  // skopeo's own defaults (the host's ~/.docker/config.json, $XDG_RUNTIME_DIR/containers/auth.json)
  // are the operator's credentials, not the caller's: never used.
  const source = (prefix: '' | 'src-') => [
    ...(insecure ? [`--${prefix}tls-verify=false`] : []),
    ...(req.credentials ? [`--${prefix}authfile`, authFile] : [`--${prefix}no-creds`]),
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: workDir, TMPDIR: workDir, XDG_RUNTIME_DIR: workDir };
  delete env.REGISTRY_AUTH_FILE;
  delete env.DOCKER_CONFIG;
  const run = (argv: string[]) =>
    exec(argv, { env, signal: req.signal, timeoutMs: Math.max(1, req.remainingMs()), logger });

  try {
    logger.info({ insecure }, 'resolving image');
    // skopeo takes a tag or a digest, not both: a digest, when given, is what is pulled.
    const asked = ref.digest ? pinnedReference(ref, ref.digest) : name;
    const manifest = await run(['skopeo', 'inspect', '--raw', ...source(''), `docker://${asked}`]).catch(
      (err: unknown) => {
        throw registryError(err, name);
      },
    );
    const digest = `sha256:${createHash('sha256').update(manifest.stdout, 'utf8').digest('hex')}`;
    if (ref.digest && ref.digest !== digest)
      throw failedPrecondition(`${name}: the registry served a manifest with digest ${digest}`);
    const layout = path.join(workDir, 'layout');
    logger.info({ digest }, 'pulling image');
    await run([
      'skopeo',
      'copy',
      '--retry-times',
      '2',
      ...source('src-'),
      `docker://${pinnedReference(ref, digest)}`,
      `oci:${layout}:${LAYOUT_TAG}`,
    ]).catch((err: unknown) => {
      throw registryError(err, name);
    });
    await rm(authFile, { force: true });
    const { config, layers, compressedBytes } = await readLayout(layout, name);
    logger.info({ digest, layers, compressedBytes }, 'image pulled; unpacking');
    await run(['umoci', 'raw', 'unpack', '--image', `${layout}:${LAYOUT_TAG}`, req.rootfs]).catch(
      (err: unknown) => {
        throw deadlineOr(
          err,
          () => new ConnectError(`unpacking ${name}: ${errorMessage(err)}`, Code.Internal),
        );
      },
    );
    await rm(layout, { recursive: true, force: true });
    return { digest, config, layers, compressedBytes };
  } finally {
    await rm(authFile, { force: true });
  }
}

interface OciDescriptor {
  digest: string;
  size?: number;
}

/** The layout skopeo wrote: one manifest, its config (platform, Env, WorkingDir, User). */
async function readLayout(
  layout: string,
  name: string,
): Promise<{ config: ImageRunConfig; layers: number; compressedBytes: number }> {
  const blob = async <T>(d: OciDescriptor): Promise<T> => {
    const [algo, hex] = d.digest.split(':');
    if (algo !== 'sha256' || !/^[a-f0-9]{64}$/.test(hex ?? '')) throw new Error(`bad digest ${d.digest}`);
    return JSON.parse(await readFile(path.join(layout, 'blobs', algo, hex!), 'utf8')) as T;
  };
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as {
    manifests: OciDescriptor[];
  };
  const manifest = await blob<{ config: OciDescriptor; layers: OciDescriptor[] }>(index.manifests[0]!);
  const image = await blob<{
    os?: string;
    architecture?: string;
    config?: { Env?: string[] | null; WorkingDir?: string; User?: string };
  }>(manifest.config);
  const arch = GOARCH[process.arch] ?? process.arch;
  if (image.os !== 'linux' || image.architecture !== arch)
    throw failedPrecondition(
      `${name} is an image for ${image.os ?? '?'}/${image.architecture ?? '?'}; this host runs linux/${arch}`,
    );
  return {
    config: {
      env: image.config?.Env ?? [],
      workdir: image.config?.WorkingDir ?? '',
      user: image.config?.User ?? '',
    },
    layers: manifest.layers.length,
    compressedBytes: manifest.layers.reduce((sum, l) => sum + (l.size ?? 0), 0),
  };
}

/**
 * skopeo's failure as a Connect error with the registry's own words: refused credentials →
 * permission_denied, an unknown repository or tag → not_found, a registry that cannot be reached →
 * unavailable.
 */
export function registryError(err: unknown, name: string): ConnectError {
  return deadlineOr(err, () => {
    const text = err instanceof ExecError ? err.stderr : errorMessage(err);
    const message = skopeoMessage(text);
    const said = `pulling ${name}: ${message}`;
    if (/unauthorized|authentication required|denied|forbidden|incorrect username or password/i.test(message))
      return new ConnectError(said, Code.PermissionDenied);
    if (/manifest unknown|name unknown|not found|404/i.test(message))
      return new ConnectError(said, Code.NotFound);
    if (/server gave HTTP response to HTTPS client/i.test(message))
      return failedPrecondition(
        `${said} (the registry speaks plain HTTP: list it in the agent's WRENN_INSECURE_REGISTRIES to allow that)`,
      );
    if (/x509|certificate/i.test(message)) return failedPrecondition(said);
    if (/no space left/i.test(message)) return new ConnectError(said, Code.ResourceExhausted);
    if (/no image found in (image index|manifest list)|choosing an image/i.test(message))
      return failedPrecondition(said);
    return new ConnectError(said, Code.Unavailable);
  });
}

/** skopeo's `level=fatal msg="…"`, without its restatement of the reference. */
export function skopeoMessage(stderr: string): string {
  const fatal = /level=fatal msg="((?:[^"\\]|\\.)*)"/.exec(stderr);
  const message = fatal ? fatal[1]!.replace(/\\(.)/g, '$1') : (stderr.trim().split('\n').pop() ?? '');
  return message
    .replace(/^Error parsing image name "[^"]*": /, '')
    .replace(/^initializing source [^:]+: /, '')
    .slice(0, 1000);
}

function deadlineOr(err: unknown, other: () => ConnectError): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof ExecError && err.exitCode === null && /ENOENT/.test(err.stderr))
    return failedPrecondition(
      `${err.argv[0]} is not installed on this host (bash scripts/setup.sh installs skopeo and umoci)`,
    );
  if (err instanceof ExecError && err.isTimeout)
    return new ConnectError(
      'the image import ran out of time (WRENN_IMAGE_IMPORT_TIMEOUT_SEC)',
      Code.DeadlineExceeded,
    );
  return other();
}
