import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  BuildError,
  Sandbox,
  Template,
  waitForFile,
  waitForPort,
  type LogEntry,
  type TemplateBuildStatusResponse,
} from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '@wrenn/server';
import { startAgentProcess, testDataDir, type AgentProcess } from './support/agent-process.js';
import { apiCall, startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { eventually, wrennHostState } from './support/host-state.js';

// E2B's Template SDK (the pinned `e2b` 2.51.0, unchanged) building templates on Wrenn: the build
// runs in a real gVisor sandbox on a real agent, and `Sandbox.create(name)` starts from its
// snapshot. The wire's refusals and shapes are in apps/server/src/e2b/templates.int.test.ts.
let agent: AgentProcess;
let plane: ControlPlane;
let server: RunningServer;
let key: string;
let context: string;

beforeAll(async () => {
  agent = await startAgentProcess();
  plane = await startControlPlane(agent.url);
  server = plane.server;
  key = await teamApiKey(server.url, `e2b-template-${Date.now()}@example.com`);
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = key;
  // The files COPY steps take: a directory with a script (mode set by the copy) and a file.
  context = await mkdtemp(path.join(tmpdir(), 'e2b-template-ctx-'));
  await mkdir(path.join(context, 'app'));
  await writeFile(path.join(context, 'app', 'hello.sh'), '#!/bin/sh\necho hello from the template\n');
  await chmod(path.join(context, 'app', 'hello.sh'), 0o644);
  await writeFile(path.join(context, 'app', 'index.html'), 'served by the start command\n');
  await writeFile(path.join(context, 'notes.txt'), 'copied notes\n');
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
  if (context) await rm(context, { recursive: true, force: true });
});

/** A sandbox from `template`, killed after `fn` whatever happens. */
async function withSandbox<T>(template: string, fn: (sbx: Sandbox) => Promise<T>): Promise<T> {
  const sbx = await Sandbox.create(template, { timeoutMs: 300_000 });
  try {
    return await fn(sbx);
  } finally {
    await sbx.kill();
  }
}

const webapp = () =>
  Template({ fileContextPath: context })
    .fromBaseImage()
    .runCmd('echo built-as-$(id -un) > /home/user/who')
    .runCmd(['id -un > /root/who', 'mkdir -p /srv/site'], { user: 'root' })
    .copy('app', '/opt/app', { mode: 0o755 })
    .copy('notes.txt', '/home/user/notes.txt', { user: 'user', mode: 0o600 })
    .setEnvs({ GREETING: 'hello world', STAGE: 'e2b' })
    .setWorkdir('/srv/site')
    .setUser('root')
    .runCmd('pwd > /tmp/pwd && echo "$GREETING from $(id -un)" > /srv/site/greeting')
    .setUser('user')
    .setStartCmd('python3 -m http.server 8000 --directory /opt/app', waitForPort(8000));

const out = async (sbx: Sandbox, cmd: string, user?: 'root' | 'user') =>
  (await sbx.commands.run(cmd, user ? { user } : {})).stdout;

describe("E2B's Template SDK against Wrenn (real gVisor)", () => {
  it('Template.build with every step type; Sandbox.create(name) and (name:tag) have the files, env and the running start command; the cache and skipCache', async () => {
    const logs: LogEntry[] = [];
    const built = await Template.build(webapp(), 'e2b-webapp:v1', {
      cpuCount: 1,
      memoryMB: 512,
      onBuildLogs: (entry) => logs.push(entry),
    });
    expect(built).toMatchObject({ name: 'e2b-webapp:v1', tags: ['default', 'v1'] });
    const messages = logs.map((l) => l.message);
    expect(messages).toContain("Uploaded 'app'");
    expect(messages.some((m) => m.includes('COPY app /opt/app'))).toBe(true);

    for (const ref of ['e2b-webapp', 'e2b-webapp:v1', built.templateId]) {
      await withSandbox(ref, async (sbx) => {
        expect(
          await out(
            sbx,
            'cat /home/user/who /root/who /tmp/pwd /srv/site/greeting; /opt/app/hello.sh; stat -c %a /opt/app/hello.sh; stat -c "%a %U" /home/user/notes.txt; cat /home/user/notes.txt',
            'root',
          ),
          ref,
        ).toBe(
          [
            'built-as-user',
            'root',
            '/srv/site',
            'hello world from root',
            'hello from the template',
            '755',
            '600 user',
            'copied notes',
            '',
          ].join('\n'),
        );
        // ENV steps hold in the template's sandboxes.
        expect(await out(sbx, 'echo "$GREETING/$STAGE"')).toBe('hello world/e2b\n');
        // The last setWorkdir and setUser are what commands default to, as in E2B.
        expect(await out(sbx, 'pwd; id -un')).toBe('/srv/site\nuser\n');
        // The start command is already running: the snapshot kept it.
        expect(await out(sbx, 'curl -sf http://127.0.0.1:8000/index.html')).toBe(
          'served by the start command\n',
        );
      });
    }
    const info = await Sandbox.list().nextItems();
    expect(info).toEqual([]);

    // Rebuilt unchanged, the steps come from the cache; with skipCache (`force`), none does.
    const rebuild = async (opts: { skipCache?: boolean }) => {
      const lines: string[] = [];
      await Template.build(webapp(), 'e2b-webapp', {
        cpuCount: 1,
        memoryMB: 512,
        ...opts,
        onBuildLogs: (entry) => lines.push(entry.message),
      });
      return lines;
    };
    expect((await rebuild({})).some((m) => /^cache: the first \d+ of 9 steps are reused/.test(m))).toBe(true);
    const forced = await rebuild({ skipCache: true });
    expect(forced).toContain('cache skipped: every step runs');
    expect(forced.some((m) => m.startsWith('cache: the first'))).toBe(false);
  }, 600_000);

  it('buildInBackground + getBuildStatus with logsOffset; a waitForFile ready check', async () => {
    const template = Template()
      .fromTemplate('e2b-webapp')
      .runCmd('echo second > /home/user/second')
      .setStartCmd('sh -c "sleep 1; touch /tmp/ready; exec sleep infinity"', waitForFile('/tmp/ready'));
    const build = await Template.buildInBackground(template, 'e2b-second', { cpuCount: 1, memoryMB: 512 });
    let offset = 0;
    let status: TemplateBuildStatusResponse;
    const seen: string[] = [];
    const started = Date.now();
    for (;;) {
      status = await Template.getBuildStatus(build, { logsOffset: offset });
      offset += status.logEntries.length;
      seen.push(...status.logEntries.map((e) => e.message));
      if (status.status === 'ready' || status.status === 'error') break;
      expect(Date.now() - started, 'the build did not end').toBeLessThan(600_000);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(status.status, JSON.stringify({ reason: status.reason, seen })).toBe('ready');
    expect(seen[0]).toBe('queued');
    expect(seen.some((m) => m.includes('RUN echo second'))).toBe(true);
    // Every line was read once: the log has nothing past the offset.
    expect((await Template.getBuildStatus(build, { logsOffset: offset })).logEntries).toEqual([]);

    await withSandbox('e2b-second', async (sbx) => {
      expect(await out(sbx, 'cat /home/user/second /home/user/who; ls /tmp/ready')).toBe(
        'second\nbuilt-as-user\n/tmp/ready\n',
      );
      expect(await out(sbx, 'pgrep -f "sleep infinity" >/dev/null && echo running')).toBe('running\n');
    });
  }, 600_000);

  it('tags (name:v1, assign, remove), exists, a failing build as BuildError, delete', async () => {
    expect(await Template.exists('e2b-webapp')).toBe(true);
    expect(await Template.exists('e2b-nothing')).toBe(false);
    const tags = await Template.getTags('e2b-webapp');
    expect(tags.map((t) => t.tag).sort()).toEqual(['default', 'v1']);
    await Template.assignTags('e2b-webapp:v1', 'prod');
    await withSandbox('e2b-webapp:prod', async (sbx) => {
      expect(await out(sbx, 'cat /home/user/notes.txt')).toBe('copied notes\n');
    });
    await Template.removeTags('e2b-webapp', 'prod');
    const gone = await Sandbox.create('e2b-webapp:prod').catch((e: unknown) => e);
    expect(String(gone)).toMatch(/404|not found/);

    const failed = await Template.build(
      Template().fromBaseImage().runCmd('echo about to fail >&2; exit 3'),
      'e2b-broken',
      {
        cpuCount: 1,
        memoryMB: 512,
      },
    ).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(BuildError);
    expect((failed as Error).message).toMatch(/step 1 failed with exit code 3/);

    for (const name of ['e2b-second', 'e2b-broken', 'e2b-webapp']) {
      const res = await apiCall(server.url, 'DELETE', `/templates/${name}`, { key });
      expect(res.status, `${name}: ${JSON.stringify(res.body)}`).toBe(204);
      expect(await Template.exists(name)).toBe(false);
    }
    const refused = await Sandbox.create('e2b-webapp:v1').catch((e: unknown) => e);
    expect(String(refused)).toMatch(/not found/);
    // Nothing of the builds is left running.
    await eventually(async () => {
      expect((await wrennHostState(testDataDir)).runscProcesses).toEqual([]);
    }, 30_000);
  }, 600_000);
});
