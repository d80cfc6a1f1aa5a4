import { UUID_PATTERN } from '@wrenn/core';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Context, Hono } from 'hono';
import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { hashApiKey } from '../auth/tokens.js';
import type { Db } from '../db/database.js';
import type { Env, ServerDeps } from '../http/app-types.js';
import { ApiError, badRequest, unauthorized } from '../http/errors.js';
import { teamScope } from '../services/builds/build-files.js';

/** Where the SDK PUTs a COPY step's files: this server, no API key, only the URL's token. */
export const BUILD_UPLOAD_PATH = '/build-uploads/';
const AUDIENCE = 'wrenn:build-upload';
/** Checked when the upload starts; a long upload may run past it. */
const UPLOAD_URL_TTL_SEC = 15 * 60;
const DEFAULT_UPLOAD_MAX_BYTES = 1024 ** 3;

interface ApiKeyRow {
  id: string;
  team_id: string;
  key_hash: string;
  created_by: string;
}

/** The API key the request came with (already checked by `requireApiKey`). */
export async function requestApiKey(db: Db, c: Context<Env>): Promise<ApiKeyRow> {
  const key = c.req.header('x-api-key');
  const row = key
    ? await db
        .selectFrom('api_keys')
        .select(['id', 'team_id', 'key_hash', 'created_by'])
        .where('key_hash', '=', hashApiKey(key))
        .executeTakeFirst()
    : undefined;
  if (!row) throw unauthorized('the API key is invalid or was revoked');
  return row;
}

/**
 * The upload URL's token: a JWT naming the files' hash, signed with the hash of the API key that
 * asked for it (its `kid`). Every server on the database can check it, nothing new is stored, and
 * revoking the key voids its outstanding upload URLs. The files go to the key's team.
 */
export function signUploadToken(key: ApiKeyRow, hash: string): Promise<string> {
  return new SignJWT({ team: key.team_id })
    .setProtectedHeader({ alg: 'HS256', kid: key.id })
    .setAudience(AUDIENCE)
    .setSubject(hash)
    .setIssuedAt()
    .setExpirationTime(`${UPLOAD_URL_TTL_SEC}s`)
    .sign(Buffer.from(key.key_hash, 'hex'));
}

const refused = () => new ApiError(403, 'permission_denied', 'the upload URL is invalid or expired');

/** The scope and hash an upload token names; 403 for a forged, expired or revoked one. */
export async function verifyUploadToken(db: Db, token: string): Promise<{ scope: string; hash: string }> {
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch {
    throw refused();
  }
  if (!kid || !UUID_PATTERN.test(kid)) throw refused();
  const key = await db
    .selectFrom('api_keys')
    .select(['team_id', 'key_hash'])
    .where('id', '=', kid)
    .executeTakeFirst();
  if (!key) throw refused();
  try {
    const { payload } = await jwtVerify(token, Buffer.from(key.key_hash, 'hex'), {
      audience: AUDIENCE,
      algorithms: ['HS256'],
    });
    if (payload.team !== key.team_id || typeof payload.sub !== 'string') throw refused();
    return { scope: teamScope(key.team_id), hash: payload.sub };
  } catch {
    throw refused();
  }
}

/**
 * The origin the client reached this server at (a TLS proxy in front says so in X-Forwarded-*,
 * which reach here only from WRENN_TRUSTED_PROXIES): the upload URL goes back to the same client,
 * which must reach it the same way.
 */
export function requestOrigin(c: Context<Env>): string {
  const url = new URL(c.req.url);
  const first = (name: string) => c.req.header(name)?.split(',')[0]?.trim();
  const proto = first('x-forwarded-proto');
  const host = first('x-forwarded-host');
  return `${proto && /^https?$/.test(proto) ? proto : url.protocol.replace(':', '')}://${host || url.host}`;
}

/**
 * `PUT /build-uploads/{token}`: the body (the SDK's gzip tar, stored as it comes) streamed to the
 * team's build files under the token's hash; over the server's upload limit → 413.
 */
export function buildUploadRoutes(api: Hono<Env>, deps: ServerDeps): void {
  const max = deps.uploadMaxBytes ?? DEFAULT_UPLOAD_MAX_BYTES;
  api.put(`${BUILD_UPLOAD_PATH}:token`, async (c) => {
    const { scope, hash } = await verifyUploadToken(deps.db, c.req.param('token'));
    const declared = c.req.header('content-length');
    if (declared !== undefined && Number(declared) > max) {
      c.header('connection', 'close');
      throw new ApiError(
        413,
        'payload_too_large',
        `body: ${declared} bytes is over the upload limit of ${max} bytes`,
      );
    }
    const body = c.req.raw.body;
    if (!body) throw badRequest('body', 'is required');
    const stream = Readable.fromWeb(body as WebReadableStream<Uint8Array>);
    try {
      const { size } = await deps.builds.files.put(scope, hash, stream, { maxBytes: max, verify: false });
      return c.json({ hash, bytes: size }, 200);
    } catch (err) {
      // Past the limit: the rest of the body is not read; the connection goes with it.
      stream.destroy();
      if (err instanceof ApiError && err.status === 413) c.header('connection', 'close');
      throw err;
    }
  });
}
