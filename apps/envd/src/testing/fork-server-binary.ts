import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, readFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const appDir = fileURLToPath(new URL('../..', import.meta.url));
let built: Promise<string> | undefined;

/**
 * The fork-server compiled by build.mjs, but outside dist/: bundle.int.test.ts rebuilds dist/ while
 * other test files run. Cached by source hash, so each version compiles once per machine.
 */
export function testForkServerBinary(): Promise<string> {
  built ??= (async () => {
    const hash = createHash('sha256');
    for (const file of ['native/forkserver.c', 'build.mjs']) hash.update(await readFile(join(appDir, file)));
    const out = join(tmpdir(), `wrenn-forkserver-${hash.digest('hex').slice(0, 16)}`);
    try {
      await access(out);
      return out;
    } catch {
      // not built yet
    }
    // Several test workers may race: each compiles privately and the renames are atomic.
    const own = `${out}.${process.pid}`;
    await promisify(execFile)(process.execPath, [join(appDir, 'build.mjs'), 'forkserver', own]);
    await rename(own, out);
    return out;
  })();
  return built;
}
