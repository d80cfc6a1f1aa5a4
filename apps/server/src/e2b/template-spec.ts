import { z, type ZodError } from 'zod';
import { TEMPLATE_NAME } from '../http/schemas.js';
import { badRequest, type ApiError } from '../http/errors.js';
import type { BuildRequest } from '../services/builds/builds.js';
import { BuildSpecSchema, type BuildSpec, type BuildStep } from '../services/builds/spec.js';

// E2B's Template SDK's build wire (POST /v3/templates, then POST /v2/templates/{id}/builds/{id}) in
// Wrenn's terms: a BuildRequest and a BuildSpec. Every refusal is a 400 naming the field as the
// SDK's JSON spells it (`steps[3].args`), so the SDK's BuildError says what to fix.

/** A tag (`name:tag`): Docker's rule for tags. */
export const TAG = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, "must be letters, digits, '_', '.' or '-' (at most 128)");

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The largest sizes a template's sandboxes may ask for (those of `POST /v1/sandboxes`). */
const LIMITS = { vcpus: 64, memoryMb: 262_144, diskMb: 1_048_576 } as const;
/** A built template's sizes when the build names none: those of `POST /v1/builds` (and E2B's). */
const DEFAULTS = { vcpus: 2, memoryMb: 1024, diskMb: 4096 } as const;

const BuildRequestBody = z.object({
  name: z.string().optional(),
  /** E2B's deprecated field for `name`. */
  alias: z.string().optional(),
  tags: z.array(z.string()).max(50).optional(),
  cpuCount: z.number().int().min(1).max(LIMITS.vcpus).optional(),
  memoryMB: z.number().int().min(128).max(LIMITS.memoryMb).optional(),
  minFreeDiskMb: z
    .number()
    .int()
    .min(0)
    .max(LIMITS.diskMb - DEFAULTS.diskMb)
    .optional(),
});

/**
 * `POST /v3/templates`'s body: `name` (or `name:tag`) and `tags` → the template and the build's
 * tags; `cpuCount`/`memoryMB` → the sizes its sandboxes get (defaults: the agent's, 1 vCPU and
 * 512 MiB); `minFreeDiskMb` (E2B: free space to grow the disk by) → `disk_mb` = the default disk
 * (4096 MiB) plus it.
 */
export function parseBuildRequest(body: unknown): BuildRequest {
  const parsed = BuildRequestBody.safeParse(body ?? {});
  if (!parsed.success) throw e2bFieldError(parsed.error);
  const req = parsed.data;
  const full = req.name ?? req.alias;
  if (!full) throw badRequest('name', 'is required');
  const colon = full.indexOf(':');
  const name = colon === -1 ? full : full.slice(0, colon);
  const nameTag = colon === -1 ? undefined : full.slice(colon + 1);
  const nameCheck = TEMPLATE_NAME.safeParse(name);
  if (!nameCheck.success) throw badRequest('name', nameCheck.error.issues[0]!.message);
  if (nameTag !== undefined && !TAG.safeParse(nameTag).success)
    throw badRequest('name', `the tag after ':' ${TAG.safeParse(nameTag).error?.issues[0]?.message}`);
  const tags = [...(nameTag !== undefined ? [nameTag] : []), ...(req.tags ?? [])];
  tags.forEach((tag, i) => {
    const check = TAG.safeParse(tag);
    if (!check.success) throw badRequest(`tags[${i}]`, check.error.issues[0]!.message);
  });
  return {
    templateName: name,
    vcpus: req.cpuCount ?? DEFAULTS.vcpus,
    memoryMb: req.memoryMB ?? DEFAULTS.memoryMb,
    diskMb: DEFAULTS.diskMb + (req.minFreeDiskMb ?? 0),
    tags: [...new Set(tags)],
  };
}

const Step = z.object({
  type: z.string(),
  args: z.array(z.string()).default([]),
  force: z.boolean().optional(),
  filesHash: z.string().optional(),
  // forceUpload, resolveSymlinks, gzip: the SDK's own (they shape its upload), ignored here.
});

const Registry = z.discriminatedUnion('type', [
  z.object({ type: z.literal('registry'), username: z.string().min(1), password: z.string().min(1) }),
  z.looseObject({ type: z.literal('aws') }),
  z.looseObject({ type: z.literal('gcp') }),
]);

const BuildStartBody = z.object({
  force: z.boolean().optional(),
  fromImage: z.string().min(1).max(512).optional(),
  fromTemplate: z.string().min(1).max(200).optional(),
  fromImageRegistry: Registry.optional(),
  startCmd: z.string().optional(),
  readyCmd: z.string().optional(),
  steps: z.array(Step).max(500).default([]),
});

/**
 * The SDK's default base (`fromBaseImage()`, and `Template()` with no `from…`), with any tag or
 * digest, on Docker Hub by any of its names: Wrenn's own base template stands in for it.
 */
const DEFAULT_BASE_IMAGE =
  /^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/)?e2bdev\/base(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;

export const isDefaultBaseImage = (image: string) => DEFAULT_BASE_IMAGE.test(image);

export interface TranslatedBuild {
  spec: BuildSpec;
  /** `force` on the template or on any step: every step runs, none is taken from the cache. */
  skipCache: boolean;
  /** Each COPY's upload, by the index of its step in the SDK's `steps`. */
  uploads: { index: number; hash: string }[];
}

/** `POST /v2/templates/{id}/builds/{id}`'s body (TemplateBuildStartV2) as a BuildSpec. */
export function translateBuildStart(body: unknown): TranslatedBuild {
  const parsed = BuildStartBody.safeParse(body ?? {});
  if (!parsed.success) throw e2bFieldError(parsed.error);
  const req = parsed.data;
  const uploads: TranslatedBuild['uploads'] = [];
  const steps = req.steps.map((step, index) => {
    const made = translateStep(step, index);
    if (made.type === 'copy') uploads.push({ index, hash: made.filesHash });
    return made;
  });
  const spec: BuildSpec = {
    from: translateFrom(req),
    steps,
    ...(req.startCmd ? { startCmd: req.startCmd } : {}),
    ...(req.readyCmd ? { readyCmd: req.readyCmd } : {}),
  };
  // What the steps were not checked for above (user names, modes, env names, lengths).
  const checked = BuildSpecSchema.safeParse(spec);
  if (!checked.success) throw e2bFieldError(checked.error, specPathToE2b);
  return {
    spec: checked.data,
    skipCache: (req.force ?? false) || req.steps.some((s) => s.force === true),
    uploads,
  };
}

function translateFrom(req: z.infer<typeof BuildStartBody>): BuildSpec['from'] {
  if (req.fromImage !== undefined && req.fromTemplate !== undefined)
    throw badRequest('fromTemplate', 'give fromImage or fromTemplate, not both');
  if (req.fromTemplate !== undefined) return { template: req.fromTemplate };
  if (req.fromImage === undefined || isDefaultBaseImage(req.fromImage)) return { template: 'base' };
  const registry = req.fromImageRegistry;
  if (registry && registry.type !== 'registry')
    throw badRequest(
      'fromImageRegistry.type',
      `${JSON.stringify(registry.type)} registries are not supported (use type "registry" with a username and password, e.g. a token)`,
    );
  return {
    image: req.fromImage,
    ...(registry ? { credentials: { username: registry.username, password: registry.password } } : {}),
  };
}

function translateStep(step: z.infer<typeof Step>, index: number): BuildStep {
  const at = `steps[${index}]`;
  const args = step.args;
  const arity = (min: number, max: number, shape: string) => {
    if (args.length < min || args.length > max) throw badRequest(`${at}.args`, `${step.type} takes ${shape}`);
  };
  const optional = (value: string | undefined) => (value ? value : undefined);
  switch (step.type) {
    case 'RUN': {
      arity(1, 2, '[command, user?]');
      const user = optional(args[1]);
      return { type: 'run', command: args[0]!, ...(user ? { user } : {}) };
    }
    case 'COPY': {
      arity(2, 4, '[src, dest, user?, mode?]');
      if (!step.filesHash) throw badRequest(`${at}.filesHash`, 'is required for COPY');
      const user = optional(args[2]);
      const mode = optional(args[3]);
      return {
        type: 'copy',
        src: args[0]!,
        dest: args[1]!,
        filesHash: step.filesHash,
        ...(user ? { user } : {}),
        ...(mode ? { mode } : {}),
      };
    }
    case 'ENV': {
      if (args.length === 0 || args.length % 2 !== 0)
        throw badRequest(`${at}.args`, 'ENV takes [name, value, name, value, …]');
      const env: Record<string, string> = {};
      for (let i = 0; i < args.length; i += 2) {
        if (!ENV_NAME.test(args[i]!))
          throw badRequest(`${at}.args`, `${JSON.stringify(args[i])} is not an environment variable name`);
        env[args[i]!] = args[i + 1]!;
      }
      return { type: 'env', env };
    }
    case 'WORKDIR':
      arity(1, 1, '[path]');
      return { type: 'workdir', path: args[0]! };
    case 'USER':
      arity(1, 1, '[user]');
      return { type: 'user', user: args[0]! };
    default:
      throw badRequest(
        `${at}.type`,
        `unknown step type ${JSON.stringify(step.type)} (RUN, COPY, ENV, WORKDIR and USER are known)`,
      );
  }
}

/** A BuildSpec path as the SDK's JSON names it (`steps.3.env.X` → `steps[3].args`). */
function specPathToE2b(path: readonly PropertyKey[]): string {
  const [head, second, third] = path;
  if (head === 'steps' && typeof second === 'number')
    return third === 'filesHash' ? `steps[${second}].filesHash` : `steps[${second}].args`;
  if (head === 'from')
    return second === 'template'
      ? 'fromTemplate'
      : second === 'credentials'
        ? 'fromImageRegistry'
        : 'fromImage';
  return path.map(String).join('.') || 'body';
}

/** E2B's own paths: arrays by index in brackets (`steps[2].args`). */
function e2bPath(path: readonly PropertyKey[]): string {
  return (
    path.reduce<string>(
      (out, part) =>
        typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${String(part)}` : String(part),
      '',
    ) || 'body'
  );
}

function e2bFieldError(err: ZodError, toPath: (path: readonly PropertyKey[]) => string = e2bPath): ApiError {
  const issue = err.issues[0];
  const keys = issue?.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : '';
  return badRequest(toPath(issue?.path ?? []), `${issue?.message ?? 'invalid'}${keys}`);
}
