import path from 'node:path';
import { z } from 'zod';
import { errorMessage, parseConfig, parseHostPort } from '@wrenn/core';

// Every setting of the control plane, with its default. Parsed once in main; nothing else reads env.
const shape = {
  WRENN_DIR: z.string().default('/var/lib/wrenn'),
  WRENN_SERVER_LISTEN: z.string().default('127.0.0.1:8080'),
  // PostgreSQL when set; otherwise an embedded PGlite database in <WRENN_DIR>/db.
  DATABASE_URL: z.string().optional(),
  // HS256 key for user JWTs; generated once into the data dir when not set.
  WRENN_JWT_SECRET: z.string().min(32).optional(),
  WRENN_AGENT_URL: z.string().default('http://127.0.0.1:7070'),
  LOG_LEVEL: z.string().default('info'),
  // Largest file one upload may carry; bigger ones get 413 (before any byte reaches the sandbox
  // when the request says its length).
  WRENN_UPLOAD_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(1024 ** 3),
};

export interface ServerConfig {
  dataDir: string;
  listenHost: string;
  listenPort: number;
  database: { kind: 'postgres'; url: string } | { kind: 'pglite'; dir: string };
  jwtSecret?: string;
  agentUrl: string;
  logLevel: string;
  uploadMaxBytes?: number;
}

export function loadServerConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const raw = parseConfig(shape, env);
  let listen: { host: string; port: number };
  try {
    // Port 0: any free port (tests).
    listen = parseHostPort(raw.WRENN_SERVER_LISTEN, { allowZero: true });
  } catch (err) {
    throw new Error(`invalid configuration: WRENN_SERVER_LISTEN: ${errorMessage(err)}`);
  }
  return {
    dataDir: raw.WRENN_DIR,
    listenHost: listen.host,
    listenPort: listen.port,
    database: raw.DATABASE_URL
      ? { kind: 'postgres', url: raw.DATABASE_URL }
      : { kind: 'pglite', dir: path.join(raw.WRENN_DIR, 'db') },
    jwtSecret: raw.WRENN_JWT_SECRET,
    agentUrl: raw.WRENN_AGENT_URL,
    logLevel: raw.LOG_LEVEL,
    uploadMaxBytes: raw.WRENN_UPLOAD_MAX_BYTES,
  };
}
