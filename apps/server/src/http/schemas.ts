import { z } from '@hono/zod-openapi';
import { MAX_TIMEOUT_SEC, SANDBOX_ID_PATTERN, SANDBOX_ID_RULE } from '@wrenn/core';
import type { OomKillRecord } from '../db/schema.js';

export const ErrorSchema = z
  .object({
    code: z.string().openapi({ example: 'invalid_argument' }),
    message: z.string().openapi({ example: 'memory_mb: must be between 128 and 8192' }),
  })
  .openapi('Error');

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: ErrorSchema } },
});

/** The error answers every route may give, by status. */
export const errors = {
  400: errorResponse('Invalid input; the message names the field'),
  401: errorResponse('Missing or invalid credentials'),
  403: errorResponse('Not allowed'),
  404: errorResponse('Not found (or not visible to the caller)'),
  409: errorResponse('Conflicts with the current state'),
  429: errorResponse('Too many, or a limit reached'),
  500: errorResponse('Internal error (details only in the server log)'),
  503: errorResponse('No host can do it now; the message says why'),
} as const;

export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { 'application/json': { schema } },
});

export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { 'application/json': { schema } },
});

export const bearer = [{ bearer: [] }];

/** A team as its member sees it (`GET /v1/teams`, `GET /v1/me`). */
export const Team = z
  .object({
    id: z.uuid(),
    name: z.string(),
    role: z.enum(['owner', 'member']),
    is_byoc: z.boolean().openapi({ description: 'Runs its sandboxes only on hosts it brings' }),
  })
  .openapi('Team');
export const apiKey = [{ apiKey: [] }];

/** Sandbox ids as the agent makes them (one rule for every program, in @wrenn/core). */
export const SANDBOX_ID = z.string().regex(SANDBOX_ID_PATTERN, SANDBOX_ID_RULE);

export const SandboxIdParam = z.object({ id: SANDBOX_ID.openapi({ param: { name: 'id', in: 'path' } }) });

/** Text kept in a jsonb column: PostgreSQL cannot store a NUL character there. */
export const NO_NUL = (s: string) => !s.includes('\u0000');
export const NUL_RULE = 'must not contain a NUL character';

/** Environment variables for commands and sandboxes: POSIX names. */
export const ENV_VARS = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string());

/** A Linux user name inside the sandbox. */
export const LINUX_USER = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/);

/** Inactivity timeouts: 0 (never) to 30 days, as the agent takes them. */
export { MAX_TIMEOUT_SEC };
export const TIMEOUT_SEC = z.number().int().min(0).max(MAX_TIMEOUT_SEC);

/** Template and snapshot names: an allowlist, so no name can be a path. */
export const TEMPLATE_NAME = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "must be lowercase letters, digits, '-' or '_' (at most 63)");

/** What a sandbox starts from: a template's name or id, with a tag for built ones (`name:v1`). */
export const TEMPLATE_REF = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,62}(:[a-z0-9][a-z0-9._-]{0,62})?$/,
    "must be a template name (lowercase letters, digits, '-' or '_'), optionally with a :tag",
  );

/** `missing`: its host stopped sending heartbeats; it gets its state back when the host returns. */
export const SANDBOX_STATUS = ['pending', 'running', 'paused', 'stopped', 'error', 'missing'] as const;

/** A sandbox's fields as the API shows them; unnamed, so each listing can name its own extension. */
export const SandboxFields = z.object({
  id: z.string(),
  template: z.string(),
  status: z.enum(SANDBOX_STATUS),
  vcpus: z.number().int(),
  memory_mb: z.number().int(),
  disk_mb: z.number().int(),
  timeout_sec: z.number().int(),
  metadata: z.record(z.string(), z.string()),
  status_reason: z.string().openapi({ description: 'Why the sandbox is in its status when nobody asked' }),
  auto_paused: z.boolean().openapi({ description: 'Paused by the inactivity timeout' }),
  host_id: z.uuid().nullable().openapi({ description: 'The host it runs on' }),
  created_at: z.string(),
  network: z
    .object({
      allow_internet: z.boolean().nullable(),
      allow_out: z.array(z.string()),
      deny_out: z.array(z.string()),
      allow_public_traffic: z.boolean(),
    })
    .openapi('SandboxNetwork', { description: 'Its egress policy and traffic privacy (docs/network.md)' }),
  oom_kills: z.number().int().openapi({
    description:
      'Processes killed because the sandbox went past its memory; the sandbox lived on (docs/gvisor.md)',
  }),
  last_oom_kill: z
    .object({
      at: z.string(),
      pid: z.number().int(),
      command: z.string(),
      memory_bytes: z.number().int().openapi({ description: 'Its resident memory when it was chosen' }),
    })
    .nullable()
    .openapi('OomKill', { description: 'The last process killed for memory; null when none was' }),
});

/** A sandbox row as the API shows it (`SandboxFields`). */
export function sandboxView(row: {
  id: string;
  template: string;
  status: (typeof SANDBOX_STATUS)[number];
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  timeout_sec: number;
  metadata: Record<string, string>;
  status_reason: string;
  auto_paused: boolean;
  host_id: string | null;
  created_at: Date;
  network?: { allow_out: string[]; deny_out: string[]; allow_internet: boolean | null } | null;
  allow_public_traffic?: boolean;
  oom_kills?: number;
  last_oom_kill?: OomKillRecord | null;
}): z.infer<typeof SandboxFields> {
  return {
    id: row.id,
    template: row.template,
    status: row.status,
    vcpus: row.vcpus,
    memory_mb: row.memory_mb,
    disk_mb: row.disk_mb,
    timeout_sec: row.timeout_sec,
    metadata: row.metadata,
    status_reason: row.status_reason,
    auto_paused: row.auto_paused,
    host_id: row.host_id,
    created_at: new Date(row.created_at).toISOString(),
    network: {
      allow_internet: row.network?.allow_internet ?? null,
      allow_out: row.network?.allow_out ?? [],
      deny_out: row.network?.deny_out ?? [],
      allow_public_traffic: row.allow_public_traffic ?? true,
    },
    oom_kills: row.oom_kills ?? 0,
    last_oom_kill: row.last_oom_kill ?? null,
  };
}

/** A template row (a snapshot's fields) as the API shows it. */
export function snapshotView(row: {
  id: string;
  name: string;
  source_sandbox_id: string | null;
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  size_bytes: string;
  created_at: Date;
}) {
  return {
    id: row.id,
    name: row.name,
    source_sandbox_id: row.source_sandbox_id,
    vcpus: row.vcpus,
    memory_mb: row.memory_mb,
    disk_mb: row.disk_mb,
    size_bytes: Number(row.size_bytes),
    created_at: new Date(row.created_at).toISOString(),
  };
}

/** A sandbox in the administrators' listing of every team's sandboxes. */
export const AdminSandbox = SandboxFields.extend({ team_id: z.uuid() }).openapi('AdminSandbox');
