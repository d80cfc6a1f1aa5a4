// Bundles envd into dist/envd.cjs: one file that runs on a bare `node` binary with no node_modules,
// because sandboxes have no Node.js of their own (the agent bind-mounts the host's node and this
// dist/ directory read-only at /opt/wrenn), started by dist/envd.mjs (bootstrap.mjs) with V8's code
// cache of it (dist/envd.cache, made here). node-pty is a native addon and cannot be bundled: its JS
// and the compiled pty.node are copied to dist/node_modules/node-pty, where Node resolves the
// bundle's require('node-pty') from. native/forkserver.c becomes dist/bin/wrenn-forkserver, static so
// that it runs in any image.
//
// `node build.mjs forkserver OUT` compiles only the fork-server, to OUT (the tests use it).
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import process, { argv, exit, stdout } from 'node:process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
// ENVD_DIST: build elsewhere (the bundle's test does, so it never empties the dist/ that agents
// on this machine mount into their sandboxes).
const dist = process.env.ENVD_DIST ?? join(here, 'dist');

/** @param {string} out */
async function compileForkServer(out) {
  await mkdir(dirname(out), { recursive: true });
  await promisify(execFile)('gcc', [
    '-static',
    '-O2',
    '-Wall',
    '-Werror',
    '-o',
    out,
    join(here, 'native', 'forkserver.c'),
  ]);
}

if (argv[2] === 'forkserver') {
  await compileForkServer(argv[3] ?? 'wrenn-forkserver');
  exit(0);
}

await rm(dist, { recursive: true, force: true });
// CommonJS, not ESM: Node 20 can use V8's code cache only for a script it compiles itself
// (bootstrap.mjs, which becomes dist/envd.mjs, does), and the cache saves most of the bundle's
// compile time on every cold boot (docs/performance.md).
await build({
  entryPoints: [join(here, 'src/main.ts')],
  outfile: join(dist, 'envd.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['node-pty'],
  // import('node-pty') becomes a require() (the bundle is no ES module); import.meta.url, the
  // bundle's own location (the fork-server binary is found beside it), comes from __filename.
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': '__envdBundleUrl' },
  banner: { js: "const __envdBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'none',
  logLevel: 'warning',
});
await cp(join(here, 'bootstrap.mjs'), join(dist, 'envd.mjs'));

// node-pty at run time: its package.json, the unix JS files, and the addon built for this Node ABI.
const require = createRequire(join(here, 'package.json'));
const ptySrc = dirname(require.resolve('node-pty/package.json'));
const ptyDst = join(dist, 'node_modules', 'node-pty');
const addon = join(ptySrc, 'build', 'Release', 'pty.node');
try {
  await stat(addon);
} catch {
  throw new Error(
    `${addon} is missing: node-pty's install script did not build it. Run \`npm rebuild node-pty\` ` +
      '(root package.json allowScripts must list node-pty; node-gyp needs npm_config_nodedir or headers).',
  );
}
await mkdir(join(ptyDst, 'build', 'Release'), { recursive: true });
await cp(join(ptySrc, 'package.json'), join(ptyDst, 'package.json'));
await cp(join(ptySrc, 'LICENSE'), join(ptyDst, 'LICENSE'));
await cp(addon, join(ptyDst, 'build', 'Release', 'pty.node'));
await cp(join(ptySrc, 'lib'), join(ptyDst, 'lib'), {
  recursive: true,
  filter: (src) => !/\.(test\.js|js\.map)$/.test(src) && !/[\\/]windows\w*\.js$|conpty/i.test(src),
});

await compileForkServer(join(dist, 'bin', 'wrenn-forkserver'));

// V8's code cache of the bundle, made by the Node running this build (the host's, which the agent
// mounts into sandboxes): the bundle is evaluated once without starting envd. No NODE_OPTIONS: V8
// rejects a cache made under other flags.
{
  const env = { ...process.env, ENVD_CODE_CACHE_BUILD: join(dist, 'envd.cache') };
  delete env.NODE_OPTIONS;
  await promisify(execFile)(process.execPath, [join(dist, 'envd.mjs')], { env });
}

const files = await readdir(dist, { recursive: true });
await writeFile(join(dist, 'BUILD.txt'), `envd bundle\nfiles:\n${files.sort().join('\n')}\n`);
stdout.write(
  `envd: wrote ${join(dist, 'envd.mjs')} (+ envd.cjs, envd.cache), dist/bin/wrenn-forkserver and dist/node_modules/node-pty\n`,
);
