// Compiles native/memwatch.c into dist/wrenn-memwatch: the agent's memory threshold helper (cgroup v1
// eventfd notifications, which Node.js cannot receive itself; docs/gvisor.md, "Memory limits").
// Static, like envd's fork-server, so a host needs no particular C library to run it.
import { execFile } from 'node:child_process';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist', 'wrenn-memwatch');
await mkdir(dirname(out), { recursive: true });
// Built beside and renamed over: a running agent's helper keeps its (old) file.
await promisify(execFile)('gcc', [
  '-static',
  '-O2',
  '-Wall',
  '-Werror',
  '-o',
  `${out}.tmp`,
  join(here, 'native', 'memwatch.c'),
]);
await rename(`${out}.tmp`, out);
