import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile, copyFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec } from '@wrenn/core';

/**
 * A container registry of the test's own: Debian's `docker-registry` (distribution 2.8) serving
 * plain HTTP on a free 127.0.0.1 port, with its storage in a temp dir, optionally behind htpasswd
 * (bcrypt, made by apache2-utils' `htpasswd`). Never the package's systemd service.
 */
export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  stop(): Promise<void>;
}

const TOOLS: [string, string][] = [
  ['docker-registry', 'docker-registry'],
  ['htpasswd', 'apache2-utils'],
  ['/bin/busybox', 'busybox-static'],
  ['skopeo', 'skopeo'],
  ['umoci', 'umoci'],
];

/** Fails with what to install when a tool the OCI tests use is missing (nothing is skipped). */
export async function requireRegistryTools(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, pkg] of TOOLS) {
    const found = await exec(['sh', '-c', `command -v ${tool}`], { allowFailure: true });
    if (found.exitCode !== 0) missing.push(`${tool} (Debian package ${pkg})`);
  }
  if (missing.length)
    throw new Error(
      `missing: ${missing.join(', ')}; bash scripts/test.sh installs them (setup.sh: skopeo, umoci)`,
    );
}

export async function startRegistry(opts: { user?: string; password?: string } = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wrenn-registry-'));
  const port = await freePort();
  const auth =
    opts.user && opts.password
      ? `auth:\n  htpasswd:\n    realm: wrenn-test\n    path: ${path.join(dir, 'htpasswd')}\n`
      : '';
  if (auth) {
    const { stdout } = await exec(['htpasswd', '-Bbn', opts.user!, opts.password!]);
    await writeFile(path.join(dir, 'htpasswd'), stdout);
  }
  await writeFile(
    path.join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dir, 'storage')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      auth,
    ].join('\n'),
  );
  const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-5000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await fetch(`http://${host}/v2/`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200 || status === 401) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopChild(child, exited);
      throw new Error(`docker-registry did not start on ${host}:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    stop: async () => {
      await stopChild(child, exited);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await exited;
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** A "registry" that accepts connections and never answers: a pull from it hangs until cancelled. */
export async function startSilentServer(): Promise<{ host: string; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    host: `127.0.0.1:${port}`,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

export interface TestImage {
  /** The OCI layout (umoci's), `<dir>:<tag>`. */
  layout: string;
  marker: string;
  cleanup(): Promise<void>;
}

/**
 * A busybox-only image (Debian's busybox-static: no glibc, no libstdc++, no useradd) made with
 * umoci: /bin/busybox and a link per applet, /marker, an /etc/passwd without `user`, and traps for a
 * careless importer (/etc/hostname and /etc/group.d-style links pointing at `hostTarget` on the
 * host, which must never be written through). Config: Env, WorkingDir, User.
 */
export async function buildBusyboxImage(hostTarget: string): Promise<TestImage> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wrenn-image-'));
  const rootfs = path.join(dir, 'rootfs');
  const layoutDir = path.join(dir, 'layout');
  const marker = `marker-${Date.now()}`;
  await mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await copyFile('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  await chmod(path.join(rootfs, 'bin/busybox'), 0o755);
  const applets = (await exec(['/bin/busybox', '--list'])).stdout.split('\n').filter(Boolean);
  for (const applet of applets)
    if (applet !== 'busybox') await symlink('busybox', path.join(rootfs, 'bin', applet));
  await writeFile(path.join(rootfs, 'marker'), `${marker}\n`);
  await writeFile(
    path.join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  );
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  // Absolute links out of the image: an importer that follows them as the host sees them writes here.
  await symlink(hostTarget, path.join(rootfs, 'etc/hostname'));
  await symlink(hostTarget, path.join(rootfs, 'etc/shadow'));
  await exec(['umoci', 'init', '--layout', layoutDir]);
  await exec(['umoci', 'new', '--image', `${layoutDir}:t`]);
  await exec(['umoci', 'insert', '--image', `${layoutDir}:t`, rootfs, '/']);
  await exec([
    'umoci',
    'config',
    '--image',
    `${layoutDir}:t`,
    '--config.env',
    'PATH=/bin',
    '--config.env',
    'WRENN_TEST_ENV=from-image',
    '--config.workingdir',
    '/work',
    '--config.user',
    '1000',
  ]);
  return {
    layout: `${layoutDir}:t`,
    marker,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Pushes an OCI layout to a registry of `startRegistry`; resolves with the manifest digest. */
export async function pushImage(
  layout: string,
  target: string,
  creds?: { user: string; password: string },
): Promise<string> {
  const digestFile = path.join(tmpdir(), `wrenn-push-digest-${process.pid}-${Date.now()}`);
  try {
    await exec(
      [
        'skopeo',
        'copy',
        '--dest-tls-verify=false',
        ...(creds ? ['--dest-creds', `${creds.user}:${creds.password}`] : []),
        '--digestfile',
        digestFile,
        `oci:${layout}`,
        `docker://${target}`,
      ],
      { timeoutMs: 60_000 },
    );
    return (await readFile(digestFile, 'utf8')).trim();
  } finally {
    await rm(digestFile, { force: true });
  }
}
