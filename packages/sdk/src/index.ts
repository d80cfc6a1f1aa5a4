import createClient, { type Client } from 'openapi-fetch';
import type { components, paths } from './gen/api.js';

export type { components, paths };
/** The API's objects by their OpenAPI names (`Sandbox`, `Template`, `Build`…). */
export type Schemas = components['schemas'];
export type WrennClient = Client<paths>;

/** What every failed call answers: `{ code, message }`, the status beside. */
export class WrennApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'WrennApiError';
  }
}

export interface WrennClientOptions {
  /** The server's address; '' (the default) for the page's own origin. */
  baseUrl?: string;
  /** A session token (Bearer), asked for on every call so a sign-out takes effect at once. */
  token?: () => string | undefined;
  /** An API key (X-API-Key), for programs. */
  apiKey?: string;
  fetch?: typeof globalThis.fetch;
}

/** A client whose paths, parameters and bodies are checked against the server's document. */
export function createWrennClient(options: WrennClientOptions = {}): WrennClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl ?? '',
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  client.use({
    onRequest({ request }) {
      const token = options.token?.();
      if (token) request.headers.set('authorization', `Bearer ${token}`);
      if (options.apiKey) request.headers.set('x-api-key', options.apiKey);
      return request;
    },
  });
  return client;
}

/**
 * The data of a call, or a WrennApiError carrying the server's code and message (or, when the
 * answer was not the API's, the status line).
 */
export async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (response.ok) return data as T;
  const body = (error ?? {}) as { code?: unknown; message?: unknown };
  throw new WrennApiError(
    response.status,
    typeof body.code === 'string' ? body.code : String(response.status),
    typeof body.message === 'string' ? body.message : `${response.status} ${response.statusText}`,
  );
}
