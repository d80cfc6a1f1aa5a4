import {
  egressCidr,
  egressDomain,
  invalidArgument,
  isSandboxId,
  MAX_EGRESS_ENTRIES,
  MAX_POOL_SIZE,
  MAX_TIMEOUT_SEC,
  SANDBOX_ID_RULE,
  type EgressPolicy,
} from '@wrenn/core';
import type { AgentConfig } from '../config.js';
import { SIZE_DEFAULTS, type CreateSandboxParams } from '../sandbox/manager.js';
import type { CommandSpec } from '../sandbox/commands.js';
import { validateTemplateName } from '../storage/templates.js';
import type { ImportImageParams } from '../storage/image-importer.js';
import { parseImageReference } from '../storage/image-reference.js';
import type { MetricsRange } from '../metrics/tiers.js';
import { hostagent as pb } from '@wrenn/contracts';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const MAX_ENV_BYTES = 128 * 1024;
const MAX_METADATA_ENTRIES = 64;
const MAX_COMMAND_TIMEOUT_MS = 24 * 3600 * 1000;
const MAX_STDIN_BYTES = 16 * 1024 * 1024;

export const DEFAULTS = { template: 'base', ...SIZE_DEFAULTS, commandTimeoutMs: 60_000 };
/** The longest inactivity timeout: 30 days (one bound for every program, in @wrenn/core). */
export { MAX_TIMEOUT_SEC };
export const MIN_MEMORY_MB = 128;
export const MIN_DISK_MB = 256;

export function validateSandboxId(id: string, field = 'sandbox_id'): string {
  if (!isSandboxId(id)) throw invalidArgument(field, `${SANDBOX_ID_RULE}, got ${JSON.stringify(id)}`);
  return id;
}

/** 0 = unset: the template decides (a snapshot's sizes are fixed) or the default applies. */
function sized(
  value: number,
  field: string,
  fallback: number,
  min: number,
  max: number,
  unit: string,
): number | undefined {
  if (value === 0) return undefined;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(
      field,
      `must be between ${min} and ${max}${unit} (0 = default ${fallback}), got ${value}`,
    );
  }
  return value;
}

export function validateCreate(
  req: pb.CreateSandboxRequest,
  limits: AgentConfig['limits'],
): CreateSandboxParams {
  const template = req.template || DEFAULTS.template;
  validateTemplateName(template);
  if (req.sandboxId) validateSandboxId(req.sandboxId);
  return {
    id: req.sandboxId || undefined,
    template,
    vcpus: sized(req.vcpus, 'vcpus', DEFAULTS.vcpus, 1, limits.maxVcpus, ''),
    memoryMb: sized(req.memoryMb, 'memory_mb', DEFAULTS.memoryMb, MIN_MEMORY_MB, limits.maxMemoryMb, ' MiB'),
    diskMb: sized(req.diskMb, 'disk_mb', DEFAULTS.diskMb, MIN_DISK_MB, limits.maxDiskMb, ' MiB'),
    env: validateEnv(req.env, 'env'),
    metadata: validateMetadata(req.metadata),
    timeoutSec: validateTimeoutSec(req.timeoutSec),
    ...(req.defaultUser ? { defaultUser: validateUser(req.defaultUser, 'default_user') } : {}),
    ...(req.defaultWorkdir ? { defaultWorkdir: validateWorkdir(req.defaultWorkdir, 'default_workdir') } : {}),
    egress: validateEgress(req.egress),
  };
}

/**
 * An egress policy as the control plane sends it (already canonical): each entry checked again,
 * since every one becomes a firewall rule. Unset → undefined (no policy of the sandbox's own).
 */
export function validateEgress(
  egress: pb.EgressPolicy | undefined,
  field = 'egress',
): EgressPolicy | undefined {
  if (!egress) return undefined;
  const list = (name: string, entries: string[], parse: (entry: string) => string | undefined) => {
    if (entries.length > MAX_EGRESS_ENTRIES)
      throw invalidArgument(`${field}.${name}`, `at most ${MAX_EGRESS_ENTRIES} entries`);
    return entries.map((entry, i) => {
      let parsed: string | undefined;
      try {
        parsed = parse(entry);
      } catch (err) {
        throw invalidArgument(`${field}.${name}[${i}]`, (err as Error).message);
      }
      if (parsed === undefined)
        throw invalidArgument(`${field}.${name}[${i}]`, `${JSON.stringify(entry)} is not valid here`);
      return parsed;
    });
  };
  return {
    allowCidrs: list('allow_cidrs', egress.allowCidrs, egressCidr),
    allowDomains: list('allow_domains', egress.allowDomains, egressDomain),
    denyCidrs: list('deny_cidrs', egress.denyCidrs, egressCidr),
  };
}

function validateWorkdir(dir: string, field: string): string {
  if (!dir.startsWith('/') || dir.length > 4096 || dir.includes('\0'))
    throw invalidArgument(field, `must be an absolute path, got ${JSON.stringify(dir)}`);
  return dir;
}

/** SetWarmPool: a template name and a size from 0 to 64, and no more than the host may run. */
export function validateWarmPool(
  req: { template: string; size: number },
  maxSandboxes: number,
): { template: string; size: number } {
  if (!req.template) throw invalidArgument('template', 'is required');
  validateTemplateName(req.template, 'template');
  const max = Math.min(MAX_POOL_SIZE, maxSandboxes);
  if (!Number.isInteger(req.size) || req.size < 0 || req.size > max)
    throw invalidArgument('size', `must be between 0 and ${max}, got ${req.size}`);
  return { template: req.template, size: req.size };
}

export function validateTimeoutSec(value: number, field = 'timeout_sec'): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_TIMEOUT_SEC)
    throw invalidArgument(field, `must be between 0 (never) and ${MAX_TIMEOUT_SEC} seconds, got ${value}`);
  return value;
}

export function validateTemplateNameField(name: string, field = 'name'): string {
  if (!name) throw invalidArgument(field, 'is required');
  validateTemplateName(name, field);
  return name;
}

const RANGES: Partial<Record<pb.MetricsRange, MetricsRange>> = {
  [pb.MetricsRange.METRICS_RANGE_10M]: '10m',
  [pb.MetricsRange.METRICS_RANGE_2H]: '2h',
  [pb.MetricsRange.METRICS_RANGE_24H]: '24h',
};

export function validateMetricsRange(range: pb.MetricsRange): MetricsRange {
  if (range === pb.MetricsRange.METRICS_RANGE_UNSPECIFIED) return '10m';
  const known = RANGES[range];
  if (!known) throw invalidArgument('range', `unknown range ${range}; use METRICS_RANGE_10M, _2H or _24H`);
  return known;
}

function validateEnv(env: Record<string, string>, field: string): Record<string, string> {
  let bytes = 0;
  for (const [k, v] of Object.entries(env)) {
    if (!ENV_NAME.test(k))
      throw invalidArgument(`${field}.${k}`, 'variable names must match [A-Za-z_][A-Za-z0-9_]*');
    if (v.includes('\0')) throw invalidArgument(`${field}.${k}`, 'value contains a NUL byte');
    bytes += k.length + v.length;
  }
  if (bytes > MAX_ENV_BYTES) throw invalidArgument(field, `larger than ${MAX_ENV_BYTES} bytes in total`);
  return env;
}

function validateMetadata(metadata: Record<string, string>): Record<string, string> {
  const entries = Object.entries(metadata);
  if (entries.length > MAX_METADATA_ENTRIES)
    throw invalidArgument('metadata', `at most ${MAX_METADATA_ENTRIES} entries`);
  for (const [k, v] of entries) {
    if (!k || k.length > 64)
      throw invalidArgument('metadata', `keys must be 1-64 characters, got ${JSON.stringify(k)}`);
    if (v.length > 1024) throw invalidArgument(`metadata.${k}`, 'values must be at most 1024 characters');
  }
  return metadata;
}

export function validateUser(user: string, field = 'user'): string {
  if (user && !USER_NAME.test(user))
    throw invalidArgument(field, `not a valid Linux user name: ${JSON.stringify(user)}`);
  return user;
}

export function validatePath(path: string, field = 'path'): string {
  if (!path) throw invalidArgument(field, 'is required');
  if (path.length > 4096) throw invalidArgument(field, 'longer than 4096 characters');
  if (path.includes('\0')) throw invalidArgument(field, 'contains a NUL byte');
  return path;
}

/** How deep a directory listing goes: 1 (its children) to 10; 0, the proto's default, is 1. */
export function validateDirDepth(depth: number, field = 'depth'): number {
  if (depth === 0) return 1;
  if (depth > 10) throw invalidArgument(field, 'must be 1 to 10');
  return depth;
}

export function validateCommand(
  cmd: pb.Command | undefined,
  mode: 'unary' | 'stream' = 'unary',
): CommandSpec {
  if (!cmd) throw invalidArgument('command', 'is required');
  if (mode === 'unary' && (cmd.interactive || cmd.pty))
    throw invalidArgument(
      cmd.pty ? 'command.pty' : 'command.interactive',
      'only ExecStream takes input later',
    );
  if (!cmd.cmd) throw invalidArgument('command.cmd', 'is required');
  if (cmd.cmd.includes('\0') || cmd.args.some((a) => a.includes('\0')))
    throw invalidArgument('command', 'contains a NUL byte');
  if (cmd.timeoutMs < 0 || cmd.timeoutMs > MAX_COMMAND_TIMEOUT_MS) {
    throw invalidArgument(
      'command.timeout_ms',
      `must be between 0 and ${MAX_COMMAND_TIMEOUT_MS} (0 = default ${DEFAULTS.commandTimeoutMs}), got ${cmd.timeoutMs}`,
    );
  }
  if (cmd.cwd && !cmd.cwd.startsWith('/'))
    throw invalidArgument('command.cwd', `must be absolute, got ${JSON.stringify(cmd.cwd)}`);
  if (cmd.stdin.byteLength > MAX_STDIN_BYTES)
    throw invalidArgument('command.stdin', `larger than ${MAX_STDIN_BYTES} bytes`);
  return {
    cmd: cmd.cmd,
    args: cmd.args,
    env: validateEnv(cmd.env, 'command.env'),
    cwd: cmd.cwd,
    user: validateUser(cmd.user, 'command.user'),
    timeoutMs: cmd.timeoutMs || DEFAULTS.commandTimeoutMs,
    stdin: cmd.stdin,
    interactive: cmd.interactive,
    pty: cmd.pty ? validatePtySize(cmd.pty, 'command.pty') : undefined,
  };
}

const MAX_PTY_SIDE = 1000;

export function validatePtySize(size: pb.PtySize | undefined, field: string): { cols: number; rows: number } {
  if (!size) throw invalidArgument(field, 'is required');
  for (const side of ['cols', 'rows'] as const) {
    if (size[side] < 1 || size[side] > MAX_PTY_SIDE)
      throw invalidArgument(`${field}.${side}`, `must be between 1 and ${MAX_PTY_SIDE}, got ${size[side]}`);
  }
  return { cols: size.cols, rows: size.rows };
}

export function validateExecInput(data: Uint8Array): Uint8Array {
  if (data.byteLength > MAX_STDIN_BYTES)
    throw invalidArgument('data', `larger than ${MAX_STDIN_BYTES} bytes`);
  return data;
}

const MAX_USERNAME = 256;
// Registry tokens used as passwords (ECR, GCR, GitHub) run to a few KiB.
const MAX_PASSWORD = 16 * 1024;

/** ImportImage: a free-form template name, an image reference, and credentials (both or neither). */
export function validateImportImage(req: {
  name: string;
  image: string;
  username: string;
  password: string;
}): ImportImageParams {
  const name = validateTemplateNameField(req.name);
  const ref = parseImageReference(req.image, 'image');
  const { username, password } = req;
  if (!username && !password) return { name, ref };
  if (!username) throw invalidArgument('username', 'is required when a password is given');
  if (!password) throw invalidArgument('password', 'is required when a username is given');
  // The auth file stores `username:password` base64-encoded: a ':' in the name would split it wrong.
  if (username.length > MAX_USERNAME || username.includes(':') || hasControlCharacter(username))
    throw invalidArgument(
      'username',
      `must be 1-${MAX_USERNAME} characters without ':' or control characters`,
    );
  // Never echoed back: a password in an error message ends up in logs.
  if (password.length > MAX_PASSWORD || hasControlCharacter(password))
    throw invalidArgument('password', `must be 1-${MAX_PASSWORD} characters without control characters`);
  return { name, ref, credentials: { username, password } };
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
