// dist/envd.mjs: starts envd from dist/envd.cjs (the bundle) with V8's code cache of it,
// dist/envd.cache, written by build.mjs. Node 20 keeps no code cache for ES modules or for
// require(), and compiling the 1.4 MB bundle was ~60 ms of CPU on the host, about twice that inside
// gVisor, on every cold boot (docs/performance.md). V8 checks the cache against the source, its own
// version and its flags, and compiles normally when it does not match (another Node binary), so a
// stale cache costs time, never correctness. `node build.mjs` copies this file to dist/envd.mjs.
//
// With ENVD_CODE_CACHE_BUILD=<file> the bundle is evaluated without starting envd and the cache is
// written to <file> (build.mjs does this with the Node that ran it, the one the agent mounts).
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import { Script } from 'node:vm';

const bundle = fileURLToPath(new URL('./envd.cjs', import.meta.url));
const cacheFile = fileURLToPath(new URL('./envd.cache', import.meta.url));
const building = process.env.ENVD_CODE_CACHE_BUILD;

let cachedData;
if (!building) {
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // No cache: compile as usual.
  }
}
// The CommonJS wrapper on the bundle's first line, so its line numbers stay as esbuild wrote them.
const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`;
const script = new Script(source, { filename: bundle, cachedData });
globalThis.__wrennEnvdCodeCache = !cachedData ? 'none' : script.cachedDataRejected ? 'rejected' : 'used';
const module = { exports: {} };
/** @type {unknown} */
const wrapper = script.runInThisContext();
const run = /** @type {(...args: unknown[]) => void} */ (wrapper);
run(module.exports, createRequire(bundle), module, bundle, fileURLToPath(new URL('.', import.meta.url)));
if (building) writeFileSync(building, script.createCachedData());
