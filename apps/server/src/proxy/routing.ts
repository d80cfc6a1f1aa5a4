import type { IncomingHttpHeaders } from 'node:http';
import { isSandboxId, parsePort, SANDBOX_ID_RULE } from '@wrenn/core';

/**
 * Which requests are sandbox traffic (E2B's rules): `Host: <port>-<sandboxId>.<domain>`, or the
 * `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers (what the SDK sends when `E2B_SANDBOX_URL` points
 * at one server). The headers win when both are there.
 */

/** A request that is for a sandbox. */
export interface SandboxAddress {
  sandboxId: string;
  port: number;
}

/** A request that tried to address a sandbox but did so wrongly; the handlers answer it 400. */
export interface SandboxRouteError {
  error: string;
}

export type SandboxRoute = SandboxAddress | SandboxRouteError;

const HOST_LABEL = /^(\d+)-([a-z0-9]+)$/;

/** The sandbox and port a request is for, `{ error }` when it addresses one wrongly, else undefined. */
export function routeSandboxRequest(headers: IncomingHttpHeaders): SandboxRoute | undefined {
  const idHeader = single(headers['e2b-sandbox-id']);
  const portHeader = single(headers['e2b-sandbox-port']);
  if (idHeader !== undefined || portHeader !== undefined) {
    if (idHeader === undefined) return { error: 'E2b-Sandbox-Port given without E2b-Sandbox-Id' };
    if (portHeader === undefined) return { error: 'E2b-Sandbox-Id given without E2b-Sandbox-Port' };
    // Node joins repeated custom headers with ", ", which then fails the checks below.
    if (!isSandboxId(idHeader)) return { error: `E2b-Sandbox-Id: ${SANDBOX_ID_RULE}` };
    const port = parsePort(portHeader);
    if (port === undefined) return { error: 'E2b-Sandbox-Port: must be an integer from 1 to 65535' };
    return { sandboxId: idHeader, port };
  }
  const host = headers.host;
  if (!host) return undefined;
  // DNS names are case-insensitive, so `49983-ABC.example` is the same host as `49983-abc.example`.
  const label = (host.split('.')[0] ?? '').replace(/:\d*$/, '').toLowerCase();
  const match = HOST_LABEL.exec(label);
  if (!match) return undefined;
  const [, portText = '', sandboxId = ''] = match;
  const port = parsePort(portText);
  if (port === undefined) return { error: `host: port ${portText} is not from 1 to 65535` };
  if (!isSandboxId(sandboxId)) return { error: `host: the sandbox id ${SANDBOX_ID_RULE}` };
  return { sandboxId, port };
}

// Node joins a repeated custom header with ", " (which then fails validation); its types still
// allow an array, read here as the same thing.
function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
