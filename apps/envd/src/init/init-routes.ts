import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@wrenn/core';
import { z } from 'zod';
import { secretsEqual } from '../auth/access-token.js';
import { BodyTooLargeError, readSmallBody } from '../http/read-body.js';
import { sendEnvdError, sendJson, sendNoContent } from '../http/responses.js';
import { ENVD_VERSION } from '../version.js';
import type { SandboxDefaults } from './sandbox-defaults.js';

// E2B's PostInit body. Fields we do not act on (volumeMounts, hyperloopIP, lifecycleID, caBundle)
// are accepted and ignored, so a newer host never breaks an older envd.
const initBody = z.looseObject({
  envVars: z.record(z.string(), z.string()).optional(),
  accessToken: z.string().min(1).optional(),
  // The sandbox clock belongs to the runtime (gVisor keeps it across checkpoints); not set here.
  timestamp: z.string().optional(),
  defaultUser: z.string().min(1).optional(),
  defaultWorkdir: z.string().min(1).optional(),
});

/**
 * POST /init. Once an access token is set, changing anything requires proving it (the header, or the
 * same token in the body); E2B answers a different token with 409 and so do we. Without that check
 * anyone who can reach the port could reset the token or the default user.
 */
export async function handleInit(
  req: IncomingMessage,
  res: ServerResponse,
  defaults: SandboxDefaults,
  logger: Logger,
): Promise<void> {
  let body: z.infer<typeof initBody>;
  try {
    const raw = (await readSmallBody(req, 1024 * 1024)).toString('utf8');
    body = initBody.parse(raw.trim() === '' ? {} : JSON.parse(raw));
  } catch (err) {
    const status = err instanceof BodyTooLargeError ? 413 : 400;
    return sendEnvdError(
      res,
      status,
      `invalid init request: ${err instanceof Error ? err.message : 'bad body'}`,
    );
  }

  const current = defaults.accessToken;
  if (current !== undefined) {
    const headerOk = secretsEqual(headerValue(req, 'x-access-token'), current);
    const bodyMatches = body.accessToken !== undefined && secretsEqual(body.accessToken, current);
    if (!headerOk && body.accessToken !== undefined && !bodyMatches) {
      return sendEnvdError(res, 409, 'access token is already set and cannot be changed');
    }
    if (!headerOk && !bodyMatches) {
      return sendEnvdError(res, 401, 'unauthorized access, please provide a valid access token');
    }
  }

  if (body.envVars) defaults.envVars = { ...defaults.envVars, ...body.envVars };
  if (body.accessToken !== undefined) defaults.accessToken = body.accessToken;
  if (body.defaultUser !== undefined) defaults.defaultUser = body.defaultUser;
  if (body.defaultWorkdir !== undefined) defaults.defaultWorkdir = body.defaultWorkdir;
  logger.info(
    {
      envVars: Object.keys(body.envVars ?? {}).length,
      hasAccessToken: defaults.accessToken !== undefined,
      defaultUser: defaults.defaultUser,
      defaultWorkdir: defaults.defaultWorkdir,
    },
    'initialized',
  );
  sendNoContent(res, { 'X-Envd-Version': ENVD_VERSION });
}

/** GET /envs: the sandbox-wide env vars every process gets. */
export function handleEnvs(res: ServerResponse, defaults: SandboxDefaults): void {
  sendJson(res, 200, defaults.envVars);
}

export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
