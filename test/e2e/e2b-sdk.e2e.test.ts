import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { CommandExitError, Sandbox, SandboxNotFoundError } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '@wrenn/server';
import { repoRoot, startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { eventually } from './support/host-state.js';

// The official `e2b` SDK, unchanged, against Wrenn: E2B_API_URL and E2B_SANDBOX_URL at the Wrenn
// server, a Wrenn API key as E2B_API_KEY. Pinned: a new SDK version must be tested before it is
// claimed to work.
const E2B_VERSION = '2.51.0';

let agent: AgentProcess;
let plane: ControlPlane;
let server: RunningServer;
let keyA: string;
let keyB: string;

/** A request through the server with a Host header, as a wildcard DNS name would arrive. */
function requestByHost(
  host: string,
  urlPath: string,
  opts: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string }> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    http
      .request(
        {
          host: '127.0.0.1',
          port,
          path: urlPath,
          method: opts.method ?? 'GET',
          headers: { ...opts.headers, host },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      )
      .on('error', reject)
      .end(opts.body);
  });
}
const getByHost = (host: string, urlPath: string) => requestByHost(host, urlPath);

beforeAll(async () => {
  agent = await startAgentProcess();
  plane = await startControlPlane(agent.url);
  server = plane.server;
  keyA = await teamApiKey(server.url, `e2b-a-${Date.now()}@example.com`);
  keyB = await teamApiKey(server.url, `e2b-b-${Date.now()}@example.com`);
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = keyA;
});

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
});

describe(`the e2b SDK ${E2B_VERSION} against Wrenn`, () => {
  it('is the version these tests were written against', async () => {
    const pkg = JSON.parse(await readFile(path.join(repoRoot, 'node_modules/e2b/package.json'), 'utf8')) as {
      version: string;
    };
    expect(pkg.version, 'the e2b SDK changed: re-check docs/e2b-compat.md, then update E2B_VERSION').toBe(
      E2B_VERSION,
    );
  });

  it('create → commands → files → timeout → pause → connect → kill, and list', async () => {
    const sbx = await Sandbox.create({ metadata: { suite: 'e2b-sdk' }, timeoutMs: 300_000 });
    try {
      // Commands: output, exit codes, env, cwd, a failure raising the SDK's error.
      const hi = await sbx.commands.run('echo hi; echo warn >&2');
      expect(hi).toMatchObject({ stdout: 'hi\n', stderr: 'warn\n', exitCode: 0 });
      expect((await sbx.commands.run('echo $GREETING', { envs: { GREETING: 'hello' } })).stdout).toBe(
        'hello\n',
      );
      expect((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout).toBe('/tmp\n');
      expect((await sbx.commands.run('whoami')).stdout).toBe('user\n');
      const failed = await sbx.commands.run('echo bad >&2; exit 3').catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(CommandExitError);
      expect(failed).toMatchObject({ exitCode: 3, stderr: 'bad\n' });

      // A background command, listed and killed.
      const sleeper = await sbx.commands.run('sleep 600', { background: true });
      expect((await sbx.commands.list()).map((p) => p.pid)).toContain(sleeper.pid);
      expect(await sleeper.kill()).toBe(true);
      await eventually(async () => {
        expect((await sbx.commands.list()).map((p) => p.pid)).not.toContain(sleeper.pid);
      });

      // Files: text and binary, directories, rename, remove, exists.
      await sbx.files.write('/home/user/notes.txt', 'line one\n');
      expect(await sbx.files.read('/home/user/notes.txt')).toBe('line one\n');
      const bytes = new Uint8Array(256 * 1024).map((_, i) => (i * 7) % 256);
      await sbx.files.write('/home/user/blob.bin', bytes.buffer);
      expect(
        Buffer.from(await sbx.files.read('/home/user/blob.bin', { format: 'bytes' })).equals(
          Buffer.from(bytes),
        ),
      ).toBe(true);
      expect(await sbx.files.makeDir('/home/user/dir')).toBe(true);
      await sbx.files.rename('/home/user/notes.txt', '/home/user/dir/notes.txt');
      const listed = (await sbx.files.list('/home/user/dir')).map((e) => e.name);
      expect(listed).toEqual(['notes.txt']);
      expect(await sbx.files.exists('/home/user/notes.txt')).toBe(false);
      expect(await sbx.files.exists('/home/user/dir/notes.txt')).toBe(true);
      await sbx.files.remove('/home/user/blob.bin');
      expect(await sbx.files.exists('/home/user/blob.bin')).toBe(false);

      await sbx.setTimeout(600_000);

      // A user server and a counter that must survive pause and resume.
      await sbx.commands.run('cd /home/user && python3 -m http.server 8000 >/dev/null 2>&1', {
        background: true,
      });
      await sbx.commands.run(
        'sh -c "i=0; while true; do i=\\$((i+1)); echo \\$i > /home/user/.count; mv /home/user/.count /home/user/count; sleep 0.2; done"',
        { background: true },
      );
      const host = sbx.getHost(8000);
      expect(host).toBe(`8000-${sbx.sandboxId}.e2b.app`);
      await eventually(async () => {
        const page = await getByHost(host, '/dir/');
        expect(page.status).toBe(200);
        expect(page.body).toContain('notes.txt');
      }, 15_000);
      // envd by the same Host-based form.
      expect((await getByHost(`49983-${sbx.sandboxId}.e2b.app`, '/health')).status).toBe(204);

      // Signed file URLs carry no sandbox id, so they are reached by Host; envd checks the signature.
      const envdHost = `49983-${sbx.sandboxId}.e2b.app`;
      const upload = new URL(await sbx.uploadUrl('/home/user/signed.txt', { useSignatureExpiration: 60 }));
      expect(upload.searchParams.get('signature')).toMatch(/^v1_/);
      const boundary = 'wrenn-e2e-boundary';
      const form = [
        `--${boundary}`,
        'Content-Disposition: form-data; name="file"; filename="signed.txt"',
        'Content-Type: application/octet-stream',
        '',
        'signed hello',
        `--${boundary}--`,
        '',
      ].join('\r\n');
      const uploadPath = upload.pathname + upload.search;
      const multipart = { 'content-type': `multipart/form-data; boundary=${boundary}` };
      const posted = await requestByHost(envdHost, uploadPath, {
        method: 'POST',
        body: form,
        headers: multipart,
      });
      expect(posted.status, posted.body).toBe(200);
      const download = new URL(await sbx.downloadUrl('/home/user/signed.txt'));
      const fetched = await getByHost(envdHost, download.pathname + download.search);
      expect(fetched).toEqual({ status: 200, body: 'signed hello' });
      // A signature for another path, or none, is refused.
      const forged = uploadPath.replace('signed.txt', 'other.txt');
      expect(
        (await requestByHost(envdHost, forged, { method: 'POST', body: form, headers: multipart })).status,
      ).toBe(401);
      expect((await getByHost(envdHost, '/files?path=%2Fhome%2Fuser%2Fsigned.txt')).status).toBe(401);

      const listedRunning = await Sandbox.list({ query: { metadata: { suite: 'e2b-sdk' } } }).nextItems();
      expect(listedRunning.map((s) => [s.sandboxId, s.state])).toEqual([[sbx.sandboxId, 'running']]);

      const before = Number(await sbx.files.read('/home/user/count'));
      expect(await sbx.pause()).toBe(true);
      expect(await sbx.isRunning()).toBe(false);
      const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems();
      expect(paused.map((s) => s.sandboxId)).toContain(sbx.sandboxId);

      // Connect resumes it: files, the server and the counter carry on.
      const again = await Sandbox.connect(sbx.sandboxId);
      expect(await again.isRunning()).toBe(true);
      expect(await again.files.read('/home/user/dir/notes.txt')).toBe('line one\n');
      const after = Number(await again.files.read('/home/user/count'));
      expect(after).toBeGreaterThanOrEqual(before);
      await eventually(async () => {
        expect(Number(await again.files.read('/home/user/count'))).toBeGreaterThan(after);
      });
      await eventually(async () => expect((await getByHost(host, '/dir/')).status).toBe(200), 15_000);
      await eventually(async () => {
        const metrics = await again.getMetrics();
        expect(metrics.length).toBeGreaterThan(0);
        expect(metrics.at(-1)).toMatchObject({ cpuCount: 1, memTotal: 512 * 1024 * 1024 });
      }, 10_000);
      const info = await again.getInfo();
      expect(info).toMatchObject({
        sandboxId: sbx.sandboxId,
        state: 'running',
        metadata: { suite: 'e2b-sdk' },
      });

      expect(await again.kill()).toBe(true);
      expect(await Sandbox.kill(sbx.sandboxId)).toBe(false);
      const gone = await Sandbox.list({ query: { metadata: { suite: 'e2b-sdk' } } }).nextItems();
      expect(gone).toEqual([]);
    } finally {
      await Sandbox.kill(sbx.sandboxId).catch(() => undefined);
    }
  });

  it('on timeout kills by default, or pauses; traffic counts as activity and wakes an auto-resume sandbox', async () => {
    const doomed = await Sandbox.create({ timeoutMs: 3_000 });
    const sleeper = await Sandbox.create({
      timeoutMs: 3_000,
      lifecycle: { onTimeout: 'pause', autoResume: true },
    });
    try {
      expect((await sleeper.getInfo()).lifecycle).toEqual({ onTimeout: 'pause', autoResume: true });
      await sleeper.commands.run('cd /tmp && python3 -m http.server 8000 >/dev/null 2>&1', {
        background: true,
      });
      const host = sleeper.getHost(8000);
      await eventually(async () => expect((await getByHost(host, '/')).status).toBe(200), 15_000);
      // Requests through the proxy keep it awake past its 3 s.
      for (let i = 0; i < 6; i++) {
        expect((await getByHost(host, '/')).status).toBe(200);
        await new Promise((r) => setTimeout(r, 1_000));
      }
      expect((await sleeper.getInfo()).state).toBe('running');
      // Left alone, it is paused; the default one is killed.
      await eventually(async () => expect((await sleeper.getInfo()).state).toBe('paused'), 20_000);
      await eventually(async () => expect(await Sandbox.kill(doomed.sandboxId)).toBe(false), 20_000);
      // Traffic wakes it, with its server still listening.
      expect((await getByHost(host, '/')).status).toBe(200);
      expect((await sleeper.getInfo()).state).toBe('running');
    } finally {
      await sleeper.kill().catch(() => undefined);
      await doomed.kill().catch(() => undefined);
    }
  });

  it('snapshots and forks: new sandboxes start from the state, and write only their own', async () => {
    const source = await Sandbox.create({ timeoutMs: 300_000 });
    const made: Sandbox[] = [];
    try {
      await source.files.write('/home/user/state', 'prepared\n');
      const snapshot = await source.createSnapshot();
      expect((await Sandbox.listSnapshots().nextItems()).map((s) => s.snapshotId)).toContain(
        snapshot.snapshotId,
      );
      const fromSnapshot = await Sandbox.create(snapshot.snapshotId);
      made.push(fromSnapshot);
      expect(await fromSnapshot.files.read('/home/user/state')).toBe('prepared\n');

      const forks = await source.fork({ count: 2, timeoutMs: 120_000 });
      expect(forks).toHaveLength(2);
      for (const fork of forks) {
        if (!(fork instanceof Sandbox)) throw fork;
        made.push(fork);
        expect(await fork.files.read('/home/user/state')).toBe('prepared\n');
      }
      const [a, b] = forks as Sandbox[];
      await a!.files.write('/home/user/state', 'changed in a fork\n');
      expect(await b!.files.read('/home/user/state')).toBe('prepared\n');
      expect(await source.files.read('/home/user/state')).toBe('prepared\n');
      expect(await source.isRunning()).toBe(true);

      expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
      expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(false);
    } finally {
      for (const sbx of [source, ...made]) await sbx.kill().catch(() => undefined);
    }
  });

  it("keeps another team's key away from the sandbox", async () => {
    const sbx = await Sandbox.create();
    try {
      // A 404 (the SDK's SandboxNotFoundError with the message it gives a 404 from connect), not
      // any failure: a 401, a 500 or a proxy error must not pass for "not visible to this team".
      const refused = await Sandbox.connect(sbx.sandboxId, { apiKey: keyB }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(SandboxNotFoundError);
      expect((refused as Error).message).toBe(`Paused sandbox ${sbx.sandboxId} not found`);
      expect((await Sandbox.list({ apiKey: keyB }).nextItems()).map((s) => s.sandboxId)).not.toContain(
        sbx.sandboxId,
      );
      expect(await Sandbox.kill(sbx.sandboxId, { apiKey: keyB })).toBe(false);
      expect(await sbx.isRunning()).toBe(true);
      expect((await sbx.commands.run('echo still mine')).stdout).toBe('still mine\n');
    } finally {
      await sbx.kill();
    }
  });
});
