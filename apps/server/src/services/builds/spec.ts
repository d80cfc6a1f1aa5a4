import { z } from 'zod';

/**
 * What a build does, whichever front door it came through (a `/v1` recipe or E2B's Template SDK):
 * a base, then steps run in one sandbox in order, then an optional start command with a ready
 * check. Stored with the build (`template_builds.spec`) and hashed for the cache.
 */

const SHA256 = /^[0-9a-f]{64}$/;
/** Linux user names inside the sandbox (useradd's rule, plus numeric ids). */
const USER = /^([a-z_][a-z0-9_-]{0,31}\$?|\d{1,10})$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const user = z.string().regex(USER, 'must be a Linux user name (or uid)');

export const BuildStepSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('run'),
    command: z.string().min(1).max(65_536),
    user: user.optional(),
  }),
  z.strictObject({
    type: z.literal('copy'),
    /** Path or glob inside the uploaded context. */
    src: z.string().min(1).max(4096),
    dest: z.string().min(1).max(4096),
    /** The uploaded context file (`PUT …/files/{hash}`) this COPY takes from. */
    filesHash: z.string().regex(SHA256, 'must be a SHA-256 in hex'),
    user: user.optional(),
    /** Octal file mode applied to what is copied, e.g. `0755`. */
    mode: z
      .string()
      .regex(/^0?[0-7]{3,4}$/, 'must be an octal mode such as 0755')
      .optional(),
  }),
  z.strictObject({
    type: z.literal('env'),
    env: z.record(z.string().regex(ENV_NAME, 'must be an environment variable name'), z.string().max(65_536)),
  }),
  z.strictObject({ type: z.literal('workdir'), path: z.string().min(1).max(4096) }),
  z.strictObject({ type: z.literal('user'), user }),
]);

export type BuildStep = z.infer<typeof BuildStepSchema>;

export const BuildSpecSchema = z.strictObject({
  /** A template the team may use (`base`, a snapshot, a built template), or an OCI image. */
  from: z.union([
    z.strictObject({ template: z.string().min(1).max(200) }),
    z.strictObject({
      image: z.string().min(1).max(512),
      credentials: z.strictObject({ username: z.string().min(1), password: z.string().min(1) }).optional(),
    }),
  ]),
  steps: z.array(BuildStepSchema).max(500),
  /** Left running in the snapshot; sandboxes from the template start with it running. */
  startCmd: z.string().min(1).max(65_536).optional(),
  /** A shell command that exits 0 once the start command is ready (E2B's ready helpers are these). */
  readyCmd: z.string().min(1).max(65_536).optional(),
  /** Seconds the ready command (and the healthcheck) may keep failing before the build fails. */
  readyTimeoutSec: z.number().int().min(1).max(3600).optional(),
  /** Run last, with the start command running; must exit 0 (retried until the ready timeout). */
  healthcheck: z.string().min(1).max(65_536).optional(),
});

export type BuildSpec = z.infer<typeof BuildSpecSchema>;

/** What a step leaves for the next ones (Docker's ENV, WORKDIR and USER). */
export interface BuildState {
  env: Record<string, string>;
  workdir?: string;
  user?: string;
}

export const INITIAL_STATE: BuildState = { env: {} };

/** The state after a step that changes no files. */
export function applyStateStep(state: BuildState, step: BuildStep): BuildState {
  switch (step.type) {
    case 'env':
      return { ...state, env: { ...state.env, ...step.env } };
    case 'workdir':
      return { ...state, workdir: step.path };
    case 'user':
      return { ...state, user: step.user };
    case 'run':
    case 'copy':
      return state;
  }
}

/** One line of a step for logs and errors: `RUN apt-get install -y curl`. */
export function describeStep(step: BuildStep): string {
  switch (step.type) {
    case 'run':
      return `RUN ${step.command}${step.user ? ` (as ${step.user})` : ''}`;
    case 'copy':
      return `COPY ${step.src} ${step.dest}`;
    case 'env':
      return `ENV ${Object.entries(step.env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`;
    case 'workdir':
      return `WORKDIR ${step.path}`;
    case 'user':
      return `USER ${step.user}`;
  }
}

export class RecipeError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A `/v1` recipe: one instruction per line, Dockerfile-like (`RUN`, `COPY [--chown=u] [--chmod=m]
 * src dest`, `ENV K=V …`, `WORKDIR`, `USER`); a line without an instruction is a `RUN`. COPY takes
 * from the build's uploaded context (`contextHash`).
 */
export function parseRecipe(lines: string[], contextHash: string | undefined): BuildStep[] {
  return lines.flatMap((raw, index): BuildStep[] => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return [];
    const match = /^(RUN|COPY|ENV|WORKDIR|USER)\s+(.*)$/s.exec(line);
    if (!match) return [{ type: 'run', command: line }];
    const [, op, rest] = match as unknown as [string, string, string];
    const fail = (message: string): never => {
      throw new RecipeError(index, message);
    };
    switch (op) {
      case 'RUN':
        return [{ type: 'run', command: rest }];
      case 'WORKDIR':
        return [{ type: 'workdir', path: rest }];
      case 'USER':
        return [{ type: 'user', user: rest }];
      case 'ENV': {
        const env: Record<string, string> = {};
        for (const pair of rest.split(/\s+/)) {
          const eq = pair.indexOf('=');
          if (eq <= 0) fail(`ENV takes KEY=VALUE pairs, got ${JSON.stringify(pair)}`);
          env[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        return [{ type: 'env', env }];
      }
      default: {
        if (!contextHash) fail('COPY needs the build to name an uploaded context (context_hash)');
        const words = rest.split(/\s+/);
        let owner: string | undefined;
        let mode: string | undefined;
        while (words[0]?.startsWith('--')) {
          const flag = words.shift()!;
          if (flag.startsWith('--chown=')) owner = flag.slice('--chown='.length);
          else if (flag.startsWith('--chmod=')) mode = flag.slice('--chmod='.length);
          else fail(`COPY: unknown flag ${flag} (--chown=user and --chmod=mode are known)`);
        }
        if (words.length !== 2) fail('COPY takes a source and a destination');
        return [
          {
            type: 'copy',
            src: words[0]!,
            dest: words[1]!,
            filesHash: contextHash!,
            ...(owner ? { user: owner } : {}),
            ...(mode ? { mode } : {}),
          },
        ];
      }
    }
  });
}
