import { invalidArgument } from '@wrenn/core';
import type { hostagent } from '@wrenn/contracts';
import type { AgentConfig } from '../config.js';
import type { CreateSandboxParams } from '../sandbox/manager.js';
import type { CommandSpec } from '../sandbox/commands.js';
import { validateTemplateName } from '../storage/templates.js';

const SANDBOX_ID = /^[a-z0-9]{8,32}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const MAX_ENV_BYTES = 128 * 1024;
const MAX_METADATA_ENTRIES = 64;
const MAX_COMMAND_TIMEOUT_MS = 24 * 3600 * 1000;
const MAX_STDIN_BYTES = 16 * 1024 * 1024;

export const DEFAULTS = { template: 'base', vcpus: 1, memoryMb: 512, diskMb: 4096, commandTimeoutMs: 60_000 };
export const MIN_MEMORY_MB = 128;
export const MIN_DISK_MB = 256;

export function validateSandboxId(id: string, field = 'sandbox_id'): string {
  if (!SANDBOX_ID.test(id))
    throw invalidArgument(field, `must be 8-32 lowercase letters or digits, got ${JSON.stringify(id)}`);
  return id;
}

function sized(
  value: number,
  field: string,
  fallback: number,
  min: number,
  max: number,
  unit: string,
): number {
  if (value === 0) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(
      field,
      `must be between ${min} and ${max}${unit} (0 = default ${fallback}), got ${value}`,
    );
  }
  return value;
}

export function validateCreate(
  req: hostagent.CreateSandboxRequest,
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
  };
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

export function validateCommand(cmd: hostagent.Command | undefined): CommandSpec {
  if (!cmd) throw invalidArgument('command', 'is required');
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
  };
}
