import { parseConfig } from '@wrenn/core';
import { z } from 'zod';

/** envd's settings, from its environment (the agent sets them when it starts envd in a sandbox). */
export const configShape = {
  ENVD_PORT: z.coerce.number().int().min(0).max(65535).default(49983),
  ENVD_HOST: z.string().min(1).default('0.0.0.0'),
  /** Linux user for requests without Basic auth until /init names one; unset → `user` if it exists, else root. */
  ENVD_DEFAULT_USER: z.string().min(1).optional(),
  ENVD_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** Replay buffer per process: output older than this many bytes is dropped (start/end always kept). */
  ENVD_PROCESS_BUFFER_BYTES: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .default(16 * 1024 * 1024),
  /** How long a finished process stays connectable after its last subscriber left. */
  ENVD_FINISHED_PROCESS_RETENTION_MS: z.coerce.number().int().min(0).default(60_000),
  /** The sandbox's task limit, written to its (gVisor) pids cgroup at start; unset = none. */
  ENVD_TASKS_MAX: z.coerce.number().int().min(1).optional(),
};

export type EnvdConfig = ReturnType<typeof loadConfig>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  return parseConfig(configShape, env);
}
