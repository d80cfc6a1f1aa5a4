import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { hostagent } from '@wrenn/contracts';
import {
  rpcError,
  sh,
  startAgentProcess,
  testDataDir,
  withSandbox,
  type AgentProcess,
} from './support/agent-process.js';
import {
  buildBusyboxImage,
  freePort,
  pushImage,
  requireRegistryTools,
  startRegistry,
  startSilentServer,
  type TestImage,
  type TestRegistry,
} from './support/oci-registry.js';

// ImportImage end to end: the test's own registries on loopback (one open, one behind htpasswd), an
// image it builds itself (busybox only: no glibc, no useradd), the real agent and real gVisor.
let agent: AgentProcess;
let open: TestRegistry;
let guarded: TestRegistry;
let silent: { host: string; stop: () => Promise<void> };
let image: TestImage;
let canaryDir: string;
let canary: string;
let digest: string;
const closedPort = await freePort();
const AUTH = { user: 'builder', password: 'right-horse-battery' };
const templatesDir = path.join(testDataDir, 'templates');
const NAMES = [
  'oci-tiny',
  'oci-tiny-snap',
  'oci-pinned',
  'oci-guarded',
  'oci-bad',
  'oci-cancelled',
  'oci-slow',
];

async function removeTemplates(): Promise<void> {
  for (const name of NAMES) await rm(path.join(templatesDir, name), { recursive: true, force: true });
}

/** Staging directories of templates (what a failed import must not leave). */
async function stagingDirs(): Promise<string[]> {
  return (await readdir(templatesDir).catch(() => [] as string[])).filter((e) => e.startsWith('.staging-'));
}

/** skopeo or umoci processes naming `what` (what a cancelled import must not leave running). */
async function pullProcesses(what: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (/(^|\/)(skopeo|umoci)$/.test(cmdline[0] ?? '') && cmdline.some((a) => a.includes(what)))
      found.push(cmdline.join(' '));
  }
  return found;
}

/** PID 1's command line in a sandbox: how envd was started. */
async function initCommand(sandboxId: string): Promise<string> {
  return (await sh(agent.client, sandboxId, "tr '\\0' ' ' </proc/1/cmdline")).stdout.trim();
}

beforeAll(async () => {
  await requireRegistryTools();
  await removeTemplates();
  canaryDir = await mkdtemp(path.join(tmpdir(), 'wrenn-canary-'));
  canary = path.join(canaryDir, 'host-file');
  await writeFile(canary, 'host content\n');
  [open, guarded, silent, image] = await Promise.all([
    startRegistry(),
    startRegistry(AUTH),
    startSilentServer(),
    buildBusyboxImage(canary),
  ]);
  digest = await pushImage(image.layout, `${open.host}/tests/tiny:1`);
  await pushImage(image.layout, `${guarded.host}/private/tiny:1`, AUTH);
  agent = await startAgentProcess({
    // localhost:<port> of the open registry is deliberately not listed (plain HTTP is refused there).
    WRENN_INSECURE_REGISTRIES: [open.host, guarded.host, silent.host, `127.0.0.1:${closedPort}`].join(','),
  });
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await removeTemplates();
  await Promise.all([open?.stop(), guarded?.stop(), silent?.stop(), image?.cleanup()]);
  if (canaryDir) await rm(canaryDir, { recursive: true, force: true });
});

describe('ImportImage (real registry, real gVisor)', () => {
  it('imports a busybox-only image, and a sandbox from it runs envd, its user and its files', async () => {
    const res = await agent.client.importImage({ name: 'oci-tiny', image: `${open.host}/tests/tiny:1` });
    expect(res.digest).toBe(digest);
    expect(res.env).toEqual(expect.arrayContaining(['WRENN_TEST_ENV=from-image']));
    expect(res.workdir).toBe('/work');
    expect(res.user).toBe('1000');
    expect(res.template).toMatchObject({
      name: 'oci-tiny',
      kind: hostagent.TemplateKind.IMAGE,
      source: { image: `${open.host}/tests/tiny:1`, digest },
    });
    expect(res.template!.sizeBytes).toBeGreaterThan(0n);
    const listed = (await agent.client.listTemplates({})).templates.find((t) => t.name === 'oci-tiny');
    expect(listed?.source?.digest).toBe(digest);
    // The image's absolute links were not followed out of it on the host.
    expect(await readFile(canary, 'utf8')).toBe('host content\n');

    const imageEnv = Object.fromEntries(
      res.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    await withSandbox(agent.client, { template: 'oci-tiny', memoryMb: 256, diskMb: 512 }, async (id) => {
      // A positive control for "envd runs on its own runtime": the image has no glibc to lend it.
      expect((await sh(agent.client, id, 'ls /lib /lib64 /usr/lib 2>&1; echo done')).stdout).toBe(
        'ls: /lib: No such file or directory\nls: /lib64: No such file or directory\nls: /usr/lib: No such file or directory\ndone\n',
      );
      expect(await initCommand(id)).toBe(
        '/opt/wrenn/bin/tini -- /opt/wrenn/runtime/ld.so --library-path /opt/wrenn/runtime /opt/wrenn/runtime/node /opt/wrenn/envd/envd.mjs',
      );
      expect((await sh(agent.client, id, 'id user')).stdout).toBe(
        'uid=1000(user) gid=1000(user) groups=1000(user)\n',
      );
      // envd's default user is `user`, in its home.
      expect((await sh(agent.client, id, 'id -un; pwd')).stdout).toBe('user\n/home/user\n');
      expect((await sh(agent.client, id, 'cat /marker')).stdout).toBe(`${image.marker}\n`);
      expect((await sh(agent.client, id, 'cat /etc/hostname; stat -c %a /tmp')).stdout).toBe('wrenn\n1777\n');
      const withEnv = await agent.client.exec({
        sandboxId: id,
        command: { cmd: 'echo "$WRENN_TEST_ENV"', env: imageEnv, timeoutMs: 30_000 },
      });
      expect(Buffer.from(withEnv.stdout).toString()).toBe('from-image\n');

      await agent.client.writeFile({
        sandboxId: id,
        path: '/home/user/hello.txt',
        content: Buffer.from('hi there'),
      });
      const read = await agent.client.readFile({ sandboxId: id, path: '/home/user/hello.txt' });
      expect(Buffer.from(read.content).toString()).toBe('hi there');
      expect(
        (await sh(agent.client, id, 'stat -c %U /home/user/hello.txt; cat /home/user/hello.txt')).stdout,
      ).toBe('user\nhi there');
      expect((await sh(agent.client, id, 'id -u', { user: 'root' })).stdout).toBe('0\n');

      // Checkpoints restore with the mount set they were taken with: pause/resume and a snapshot.
      // busybox-static has no nohup or pgrep: setsid and pidof.
      await sh(agent.client, id, 'setsid sleep 1000 >/dev/null 2>&1 & sleep 0.2');
      expect((await sh(agent.client, id, 'pidof sleep >/dev/null && echo running')).stdout).toBe('running\n');
      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.resumeSandbox({ sandboxId: id });
      expect(
        (await sh(agent.client, id, 'cat /home/user/hello.txt; pidof sleep >/dev/null && echo')).stdout,
      ).toBe('hi there\n');
      const { template } = await agent.client.createSnapshot({ sandboxId: id, name: 'oci-tiny-snap' });
      expect(template?.baseImage).toBe('oci-tiny');
    });
    await withSandbox(agent.client, { template: 'oci-tiny-snap' }, async (id) => {
      expect((await sh(agent.client, id, 'cat /home/user/hello.txt /marker; id -un')).stdout).toBe(
        `hi there${image.marker}\nuser\n`,
      );
    });
    await agent.client.deleteSnapshot({ name: 'oci-tiny-snap' });

    // By digest (with or without the tag): the same manifest.
    const pinned = await agent.client.importImage({
      name: 'oci-pinned',
      image: `${open.host}/tests/tiny:1@${digest}`,
    });
    expect(pinned.digest).toBe(digest);
    await agent.client.deleteSnapshot({ name: 'oci-pinned' });

    const again = await rpcError(
      agent.client.importImage({ name: 'oci-tiny', image: `${open.host}/tests/tiny:1` }),
    );
    expect(again.code).toBe(Code.AlreadyExists);
  }, 180_000);

  it('a warm pool of an imported template boots its members on the bundled runtime and serves creates', async () => {
    await agent.client.setWarmPool({ template: 'oci-tiny', size: 1 });
    try {
      const pool = async () =>
        (await agent.client.listWarmPools({})).pools.find((p) => p.template === 'oci-tiny');
      for (let i = 0; i < 300 && (await pool())?.ready !== 1; i++)
        await new Promise((r) => setTimeout(r, 200));
      expect((await pool())?.ready).toBe(1);
      await withSandbox(agent.client, { template: 'oci-tiny' }, async (id) => {
        expect((await sh(agent.client, id, 'cat /marker; id -un')).stdout).toBe(`${image.marker}\nuser\n`);
        expect(await initCommand(id)).toContain('/opt/wrenn/runtime/ld.so --library-path /opt/wrenn/runtime');
      });
      expect((await pool())?.claims).toBe(1n);
    } finally {
      await agent.client.setWarmPool({ template: 'oci-tiny', size: 0 });
    }
  }, 120_000);

  it('credentials: none or wrong → permission_denied, right → imported', async () => {
    const image2 = `${guarded.host}/private/tiny:1`;
    const anonymous = await rpcError(agent.client.importImage({ name: 'oci-guarded', image: image2 }));
    expect(anonymous.code).toBe(Code.PermissionDenied);
    const wrong = await rpcError(
      agent.client.importImage({
        name: 'oci-guarded',
        image: image2,
        username: AUTH.user,
        password: 'wrong',
      }),
    );
    expect(wrong.code).toBe(Code.PermissionDenied);
    expect(wrong.rawMessage).toMatch(/unauthorized|authentication required/i);
    // The password is never echoed.
    expect(wrong.rawMessage).not.toContain('wrong');
    expect(await stagingDirs()).toEqual([]);

    const res = await agent.client.importImage({
      name: 'oci-guarded',
      image: image2,
      username: AUTH.user,
      password: AUTH.password,
    });
    expect(res.digest).toBe(digest);
    expect(agent.logs()).not.toContain(AUTH.password);
    await agent.client.deleteSnapshot({ name: 'oci-guarded' });
  }, 120_000);

  it('bad references and unreachable registries fail clearly and leave nothing', async () => {
    const cases: [string, Code, RegExp][] = [
      [`${open.host}/tests/nope:1`, Code.NotFound, /manifest unknown/],
      [`${open.host}/tests/tiny:2`, Code.NotFound, /manifest unknown/],
      [`${open.host}/tests/tiny@sha256:${'0'.repeat(64)}`, Code.NotFound, /manifest unknown/],
      ['Not A Reference!', Code.InvalidArgument, /image/],
      [`${open.host}/tests/tiny@sha256:abc`, Code.InvalidArgument, /digest/],
      // Listed registries only speak plain HTTP: the same registry by another name is refused.
      [
        `localhost:${open.host.split(':')[1]}/tests/tiny:1`,
        Code.FailedPrecondition,
        /WRENN_INSECURE_REGISTRIES/,
      ],
      [`127.0.0.1:${closedPort}/tests/tiny:1`, Code.Unavailable, /connection refused/],
    ];
    for (const [ref, code, message] of cases) {
      const err = await rpcError(agent.client.importImage({ name: 'oci-bad', image: ref }));
      expect({ ref, code: err.code }).toEqual({ ref, code });
      expect(err.rawMessage).toMatch(message);
    }
    const field = await rpcError(
      agent.client.importImage({ name: 'Bad Name', image: `${open.host}/tests/tiny:1` }),
    );
    expect(field.code).toBe(Code.InvalidArgument);
    expect(field.rawMessage).toMatch(/^name: /);
    const half = await rpcError(
      agent.client.importImage({ name: 'oci-bad', image: `${open.host}/tests/tiny:1`, username: 'x' }),
    );
    expect(half.rawMessage).toMatch(/^password: /);
    const names = (await agent.client.listTemplates({})).templates.map((t) => t.name);
    expect(names).not.toContain('oci-bad');
    expect(await stagingDirs()).toEqual([]);
  }, 120_000);

  it('a cancelled import stops the pull and leaves nothing', async () => {
    const ac = new AbortController();
    const call = agent.client.importImage(
      { name: 'oci-cancelled', image: `${silent.host}/tests/tiny:1` },
      { signal: ac.signal },
    );
    // The pull is under way (hanging on the silent registry) before the caller goes away.
    for (let i = 0; i < 100 && (await pullProcesses(silent.host)).length === 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await pullProcesses(silent.host)).not.toEqual([]);
    ac.abort();
    const err = await rpcError(call);
    expect(err.code).toBe(Code.Canceled);
    for (
      let i = 0;
      i < 50 && ((await pullProcesses(silent.host)).length || (await stagingDirs()).length);
      i++
    )
      await new Promise((r) => setTimeout(r, 100));
    expect(await pullProcesses(silent.host)).toEqual([]);
    expect(await stagingDirs()).toEqual([]);
    expect((await agent.client.listTemplates({})).templates.map((t) => t.name)).not.toContain(
      'oci-cancelled',
    );
  }, 60_000);
  it('an import past WRENN_IMAGE_IMPORT_TIMEOUT_SEC is deadline_exceeded and leaves nothing', async () => {
    // The time limit is the agent's: this one runs with the shortest allowed (10 s).
    await agent.stop();
    agent = await startAgentProcess({
      WRENN_INSECURE_REGISTRIES: silent.host,
      WRENN_IMAGE_IMPORT_TIMEOUT_SEC: '10',
    });
    const err = await rpcError(
      agent.client.importImage({ name: 'oci-slow', image: `${silent.host}/tests/tiny:1` }),
    );
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(err.rawMessage).toMatch(/longer than 10 s/);
    expect(await pullProcesses(silent.host)).toEqual([]);
    expect(await stagingDirs()).toEqual([]);
  }, 60_000);
});
