import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
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
import { wrennHostState } from './support/host-state.js';

let agent: AgentProcess;

beforeAll(async () => {
  // Templates persist by design; a run that failed half-way must not fail the next one.
  await rm(path.join(testDataDir, 'templates'), { recursive: true, force: true });
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
});

// A new connection right after a slot was torn down can fail once to be set up (docs/gvisor.md); the
// agent retries those, and so does this direct probe. Nothing was sent, so a retry is always safe.
async function fetchRetryingSetup(url: string): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url);
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code ?? '';
      if (attempt >= 3 || !['EHOSTUNREACH', 'ENETUNREACH', 'ECONNREFUSED'].includes(code)) throw err;
      console.warn(`e2e: ${url}: ${code}, retrying`);
    }
  }
}

const templateDir = (name: string) => path.join(testDataDir, 'templates', name);

describe('snapshot templates (real gVisor)', () => {
  it('fans out: 10 concurrent sandboxes from one snapshot, each with its state, none sharing writes', async () => {
    await withSandbox(agent.client, { memoryMb: 256, diskMb: 512 }, async (source) => {
      // State in memory (a server holding a value) and on disk.
      const server = [
        'import http.server, random',
        'secret = str(random.random())',
        "open('/home/user/secret', 'w').write(secret)",
        'class H(http.server.BaseHTTPRequestHandler):',
        '    def do_GET(self):',
        '        self.send_response(200); self.end_headers(); self.wfile.write(secret.encode())',
        "http.server.HTTPServer(('127.0.0.1', 7000), H).serve_forever()",
      ].join('\n');
      await agent.client.writeFile({
        sandboxId: source,
        path: '/home/user/server.py',
        content: Buffer.from(server),
      });
      await sh(
        agent.client,
        source,
        'nohup python3 /home/user/server.py >/dev/null 2>&1 & sleep 0.2; echo on-disk > /home/user/state',
      );
      const secret = (
        await sh(
          agent.client,
          source,
          'for i in $(seq 50); do curl -sf localhost:7000 && exit; sleep 0.1; done',
        )
      ).stdout;
      expect(secret).toMatch(/^0\.\d+$/);

      const { template } = await agent.client.createSnapshot({ sandboxId: source, name: 'fanout' });
      expect(template).toMatchObject({
        name: 'fanout',
        kind: hostagent.TemplateKind.SNAPSHOT,
        vcpus: 1,
        memoryMb: 256,
        diskMb: 512,
        baseImage: 'base',
      });
      expect(template!.sizeBytes).toBeGreaterThan(0n);
      // The source keeps running, with its processes.
      expect((await agent.client.getSandbox({ sandboxId: source })).sandbox?.status).toBe(
        hostagent.SandboxStatus.RUNNING,
      );
      expect((await sh(agent.client, source, 'curl -sf localhost:7000')).stdout).toBe(secret);

      const clones = await Promise.all(
        Array.from({ length: 10 }, () => agent.client.createSandbox({ template: 'fanout' })),
      );
      const ids = clones.map((c) => c.sandbox!.id);
      try {
        expect(new Set(ids).size).toBe(10);
        for (const c of clones) {
          expect(c.sandbox).toMatchObject({ template: 'fanout', vcpus: 1, memoryMb: 256, diskMb: 512 });
        }
        for (const id of ids) {
          const seen = await sh(agent.client, id, 'curl -sf localhost:7000; echo; cat /home/user/state');
          expect(seen.stdout).toBe(`${secret}\non-disk\n`);
        }
        // A write in one clone is seen by none of the others, nor by the source.
        await sh(agent.client, ids[0]!, 'echo clone-0 > /home/user/state; echo x > /tmp/only-in-0');
        for (const id of [...ids.slice(1), source]) {
          expect(
            (await sh(agent.client, id, 'cat /home/user/state; test -e /tmp/only-in-0 || echo absent'))
              .stdout,
          ).toBe('on-disk\nabsent\n');
        }
        // Each clone has its own envd token: the snapshot's token no longer opens it.
        const [host, port] = clones[1]!.sandbox!.envdAddress.split(':');
        const res = await fetchRetryingSetup(`http://${host}:${port}/files?path=/home/user/state`);
        expect(res.status).toBe(401);
      } finally {
        await Promise.all(ids.map((sandboxId) => agent.client.destroySandbox({ sandboxId })));
      }

      // Sizes are the snapshot's: asking for others is refused, naming the field.
      const sized = await rpcError(agent.client.createSandbox({ template: 'fanout', memoryMb: 1024 }));
      expect(sized.code).toBe(Code.InvalidArgument);
      expect(sized.rawMessage).toMatch(/^memory_mb: snapshot fanout fixes memory_mb at 256/);

      const listed = (await agent.client.listTemplates({})).templates.map((t) => t.name);
      expect(listed).toEqual(expect.arrayContaining(['base', 'fanout']));
      expect(existsSync(templateDir('fanout'))).toBe(true);
      await agent.client.deleteSnapshot({ name: 'fanout' });
      expect(existsSync(templateDir('fanout'))).toBe(false);
      expect((await rpcError(agent.client.createSandbox({ template: 'fanout' }))).code).toBe(Code.NotFound);
    });
    expect((await wrennHostState(testDataDir)).sandboxDirs).toEqual([]);
  });

  it('snapshots a paused sandbox as it is, and validates names', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      await sh(agent.client, id, 'echo from-paused > /home/user/p');
      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.createSnapshot({ sandboxId: id, name: 'from-paused' });
      expect((await agent.client.getSandbox({ sandboxId: id })).sandbox?.status).toBe(
        hostagent.SandboxStatus.PAUSED,
      );
      const taken = await rpcError(agent.client.createSnapshot({ sandboxId: id, name: 'from-paused' }));
      expect(taken.code).toBe(Code.AlreadyExists);
      const base = await rpcError(agent.client.createSnapshot({ sandboxId: id, name: 'base' }));
      expect(base.code).toBe(Code.AlreadyExists);
      for (const name of ['../escape', 'Upper', '', 'a/b', '.hidden', 'x'.repeat(64)]) {
        const err = await rpcError(agent.client.createSnapshot({ sandboxId: id, name }));
        expect(err.code, name).toBe(Code.InvalidArgument);
        expect(err.rawMessage).toMatch(/^name: /);
      }
      expect((await rpcError(agent.client.deleteSnapshot({ name: '../images' }))).code).toBe(
        Code.InvalidArgument,
      );
      expect((await rpcError(agent.client.deleteSnapshot({ name: 'nope' }))).code).toBe(Code.NotFound);
      // Recipe-built images are not the agent's to delete.
      expect((await rpcError(agent.client.deleteSnapshot({ name: 'base' }))).code).toBe(
        Code.FailedPrecondition,
      );
    });
    await withSandbox(agent.client, { template: 'from-paused' }, async (id) => {
      expect((await sh(agent.client, id, 'cat /home/user/p')).stdout).toBe('from-paused\n');
    });
    await agent.client.deleteSnapshot({ name: 'from-paused' });
  });

  it('flattens a running sandbox into an image template that boots with its changes', async () => {
    await withSandbox(agent.client, {}, async (id) => {
      await sh(
        agent.client,
        id,
        'echo baked > /home/user/baked; rm /etc/motd; echo in-tmp > /tmp/not-baked',
        {
          user: 'root',
        },
      );
      const { template } = await agent.client.flattenRootfs({ sandboxId: id, name: 'flat' });
      expect(template?.kind).toBe(hostagent.TemplateKind.IMAGE);
      // The sandbox was only frozen while copied: it carries on.
      expect((await sh(agent.client, id, 'echo still-here')).stdout).toBe('still-here\n');
      const rootfs = path.join(templateDir('flat'), 'rootfs');
      // Merged, not layered: a plain tree, the deletion applied, no overlay whiteouts.
      expect(existsSync(path.join(rootfs, 'home/user/baked'))).toBe(true);
      expect(existsSync(path.join(rootfs, 'etc/motd'))).toBe(false);
      expect(existsSync(path.join(rootfs, 'usr/bin/python3'))).toBe(true);
    });
    await withSandbox(agent.client, { template: 'flat', memoryMb: 256 }, async (id) => {
      const res = await sh(
        agent.client,
        id,
        'cat /home/user/baked; ls /etc/motd /tmp/not-baked 2>&1 | wc -l',
      );
      expect(res.stdout).toBe('baked\n2\n');
      // An image in use cannot be deleted from under its sandbox.
      expect((await rpcError(agent.client.deleteSnapshot({ name: 'flat' }))).code).toBe(
        Code.FailedPrecondition,
      );
    });
    await agent.client.deleteSnapshot({ name: 'flat' });
    expect(existsSync(templateDir('flat'))).toBe(false);
  });
});
