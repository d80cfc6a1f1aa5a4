import { invalidArgument } from '@wrenn/core';

/**
 * An image reference as Docker and the distribution spec read it: `[domain[:port]/]path[:tag][@digest]`.
 * Parsed here, not by skopeo, so a bad one is `invalid_argument` naming the field before any network
 * traffic, and so the agent knows the registry host (plain HTTP is allowed per host).
 */
export interface ImageReference {
  /** `host[:port]`, e.g. `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  /** `library/debian`, `tests/tiny`. */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

const MAX_REFERENCE = 512;
// The distribution reference grammar (github.com/distribution/reference), written out.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[0-9a-fA-F:.]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export const DOCKER_HUB = 'docker.io';

/** Parses and normalises an image reference (Docker's defaults: docker.io, library/, :latest). */
export function parseImageReference(text: string, field = 'image'): ImageReference {
  const bad = (why: string) => invalidArgument(field, `${why}, got ${JSON.stringify(text.slice(0, 300))}`);
  if (!text) throw invalidArgument(field, 'is required');
  if (text.length > MAX_REFERENCE) throw bad(`longer than ${MAX_REFERENCE} characters`);
  if (/[\s\0]/.test(text) || text.includes('://'))
    throw bad('expected [registry[:port]/]repository[:tag][@sha256:<hex>], without a scheme or spaces');

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('the digest must be sha256:<64 lowercase hex digits>');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad('the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -');
  }

  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  // Docker's rule: the first component is a registry when it has a dot or a port, or is localhost.
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
    if (!isRegistryHost(registry)) throw bad(`${JSON.stringify(registry)} is not a host[:port]`);
  }
  if (parts.length === 0 || parts.some((p) => !PATH_COMPONENT.test(p)))
    throw bad(
      'repository path components must be lowercase letters and digits, separated by ., _, __ or -, joined by /',
    );
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (repository.length > 255) throw bad('the repository name is longer than 255 characters');
  return { registry, repository, tag: tag ?? (digest ? undefined : 'latest'), digest };
}

function isRegistryHost(hostPort: string): boolean {
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(hostPort);
  const host = m?.[1] ?? '';
  const port = m?.[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return false;
  if (IPV6.test(host)) return true;
  return host.length > 0 && host.length <= 253 && host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

/** `registry/repository[:tag][@digest]`: the reference written out in full. */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The same image, pinned to one manifest digest. */
export function pinnedReference(ref: ImageReference, digest: string): string {
  return `${ref.registry}/${ref.repository}@${digest}`;
}

/**
 * Whether the agent may talk plain HTTP to this registry: only when the operator listed it
 * (`WRENN_INSECURE_REGISTRIES`, `host:port` or `host`). Loopback is not allowed by default: a caller's
 * reference would otherwise reach any HTTP service on the build host.
 */
export function isInsecureRegistry(registry: string, insecure: readonly string[]): boolean {
  const lower = registry.toLowerCase();
  return insecure.some((entry) => entry.toLowerCase() === lower);
}
