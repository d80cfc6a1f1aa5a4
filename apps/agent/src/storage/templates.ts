import { stat } from 'node:fs/promises';
import { invalidArgument, notFound } from '@wrenn/core';
import type { DataLayout } from './layout.js';

// An allowlist, not a denylist: a name is a single path segment that cannot climb out (`..`).
const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function validateTemplateName(name: string, field = 'template'): void {
  if (!TEMPLATE_NAME.test(name)) {
    throw invalidArgument(
      field,
      `must match ${TEMPLATE_NAME.source} (lowercase letters, digits, '-', '_'), got ${JSON.stringify(name)}`,
    );
  }
}

/** The read-only rootfs of a template, or NotFound. */
export async function resolveTemplateRootfs(layout: DataLayout, name: string): Promise<string> {
  validateTemplateName(name);
  const rootfs = layout.imageRootfs(name);
  const info = await stat(rootfs).catch(() => undefined);
  if (!info?.isDirectory()) throw notFound('template', name);
  return rootfs;
}
