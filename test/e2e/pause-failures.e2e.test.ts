import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@connectrpc/connect';
import { hostagent } from '@wrenn/contracts';
import { readFile, readdir } from 'node:fs/promises';
import {
  sleep,
  rpcError,
  installDir,
  sh,
  startAgentProcess,
  testDataDir,
  type AgentClient,
  type AgentProcess,
} from './support/agent-process.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

const { PAUSED, RUNNING } = hostagent.SandboxStatus;

/** Waits for a `runsc <subcommand>` of the test agent to appear and SIGKILLs it `afterMs` later. */
async function killRunscWhen(subcommand: string, afterMs: number): Promise<boolean> {
  const root = `--root=${path.join(testDataDir, 'run/runsc')}`;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (argv.includes(root) && argv.includes(subcommand)) {
        await sleep(afterMs);
        try {
          process.kill(Number(pid), 'SIGKILL');
          return true;
        } catch {
          return false;
        }
      }
    }
    await sleep(10);
  }
  return false;
}

/** A sandbox holding 512 MiB of random data, so a checkpoint or restore takes long enough to interrupt. */
async function bigSandbox(client: AgentClient): Promise<{ id: string; digest: string }> {
  const { sandbox } = await client.createSandbox({ memoryMb: 1536 });
  const id = sandbox!.id;
  const program = [
    'import hashlib, os, time',
    'blocks = [os.urandom(1 << 20) for _ in range(512)]',
    "d = hashlib.sha256(b''.join(blocks)).hexdigest()",
    "open('/tmp/digest.tmp', 'w').write(d); os.rename('/tmp/digest.tmp', '/tmp/digest')",
    'while True:',
    "    if os.path.exists('/tmp/again'):",
    "        os.remove('/tmp/again'); open('/tmp/now.tmp', 'w').write(hashlib.sha256(b''.join(blocks)).hexdigest())",
    "        os.rename('/tmp/now.tmp', '/tmp/now')",
    '    time.sleep(0.1)',
  ].join('\n');
  await client.writeFile({ sandboxId: id, path: '/tmp/hold.py', content: Buffer.from(program) });
  await sh(client, id, 'nohup python3 /tmp/hold.py >/dev/null 2>&1 &');
  const digest = (
    await sh(client, id, 'while [ ! -f /tmp/digest ]; do sleep 0.2; done; cat /tmp/digest', {
      timeoutMs: 120_000,
    })
  ).stdout;
  expect(digest).toMatch(/^[0-9a-f]{64}$/);
  return { id, digest };
}

async function memoryDigest(client: AgentClient, id: string): Promise<string> {
  return (
    await sh(
      client,
      id,
      'rm -f /tmp/now; touch /tmp/again; while [ ! -f /tmp/now ]; do sleep 0.2; done; cat /tmp/now',
      {
        timeoutMs: 120_000,
      },
    )
  ).stdout;
}

/** Exactly one of running or paused, and the host shows exactly what that state should hold. */
async function expectRunningXorPaused(client: AgentClient, id: string) {
  const status = (await client.getSandbox({ sandboxId: id })).sandbox!.status;
  expect([RUNNING, PAUSED]).toContain(status);
  if (status === PAUSED) {
    // A pause answers once its image is on disk; the runtime and slot go right after.
    await eventually(async () => {
      const host = await wrennHostState(testDataDir);
      expect({ ...host, iptablesRules: [], sandboxDirs: [] }).toEqual(EMPTY_HOST_STATE);
    });
  } else {
    const host = await wrennHostState(testDataDir);
    expect(host.netns).toHaveLength(1);
    expect(host.runscProcesses.length).toBeGreaterThan(0);
    expect(host.cgroups).toContain(`memory/wrenn/${id}`);
  }
  return status;
}

describe('a runtime killed in the middle of pause or resume', () => {
  let agent: AgentProcess;
  beforeAll(async () => {
    agent = await startAgentProcess();
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('mid-pause: the sandbox ends running or paused, with its memory, and nothing leaks', async () => {
    const { id, digest } = await bigSandbox(agent.client);
    try {
      // A save that outruns the kill is a pause that worked, not a failure: resume and cut sooner.
      let failure: ConnectError | undefined;
      let killed = false;
      for (const afterMs of [300, 120, 30]) {
        const pause = agent.client.pauseSandbox({ sandboxId: id }).then(
          () => undefined,
          (err: unknown) => ConnectError.from(err),
        );
        killed = await killRunscWhen('checkpoint', afterMs);
        failure = await pause;
        if (killed) break;
        await agent.client.resumeSandbox({ sandboxId: id });
      }
      expect(killed, 'runsc checkpoint finished before every kill').toBe(true);
      if (failure) expect(failure.rawMessage).toMatch(/keeps running/);
      const status = await expectRunningXorPaused(agent.client, id);
      if (status === PAUSED) await agent.client.resumeSandbox({ sandboxId: id });
      expect(await memoryDigest(agent.client, id)).toBe(digest);
      // And it still pauses and resumes normally.
      await agent.client.pauseSandbox({ sandboxId: id });
      await agent.client.resumeSandbox({ sandboxId: id });
    } finally {
      await agent.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    expect({ ...(await wrennHostState(testDataDir)), iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
  });

  it('mid-resume: the sandbox stays paused with its checkpoint, nothing leaks, and a retry works', async () => {
    const { id, digest } = await bigSandbox(agent.client);
    try {
      await agent.client.pauseSandbox({ sandboxId: id });
      let outcome: ConnectError | string = '';
      let killed = false;
      for (const afterMs of [100, 40, 10]) {
        const resume = agent.client.resumeSandbox({ sandboxId: id }).then(
          () => 'resumed',
          (err: unknown) => ConnectError.from(err),
        );
        killed = await killRunscWhen('restore', afterMs);
        outcome = await resume;
        if (killed) break;
        await agent.client.pauseSandbox({ sandboxId: id });
      }
      expect(killed, 'runsc restore finished before every kill').toBe(true);
      expect(outcome).toBeInstanceOf(ConnectError);
      expect((outcome as ConnectError).rawMessage).toMatch(/stays paused/);
      expect(await expectRunningXorPaused(agent.client, id)).toBe(PAUSED);
      const { sandbox } = await agent.client.resumeSandbox({ sandboxId: id });
      expect(sandbox?.status).toBe(RUNNING);
      expect(await memoryDigest(agent.client, id)).toBe(digest);
    } finally {
      await agent.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    expect({ ...(await wrennHostState(testDataDir)), iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
  });
});

describe('a runsc that cannot checkpoint', () => {
  let agent: AgentProcess;
  let wrapperDir: string;
  beforeAll(async () => {
    // The installed runsc, except that it does not offer --net-disconnect-ok (as releases before 2023).
    wrapperDir = await mkdtemp(path.join(tmpdir(), 'wrenn-old-runsc-'));
    const wrapper = path.join(wrapperDir, 'runsc');
    const real = path.join(installDir, 'bin/runsc');
    await writeFile(
      wrapper,
      `#!/bin/sh\nif [ "$1" = flags ]; then "${real}" flags 2>&1 | grep -v -- -net-disconnect-ok; exit 0; fi\nexec "${real}" "$@"\n`,
    );
    await chmod(wrapper, 0o755);
    agent = await startAgentProcess({ WRENN_RUNSC: wrapper });
  });
  afterAll(async () => {
    await agent?.stop();
    await rm(wrapperDir, { recursive: true, force: true });
  });

  it('answers Pause with FailedPrecondition saying why and how to fix it; the sandbox keeps running', async () => {
    const { sandbox } = await agent.client.createSandbox({});
    const id = sandbox!.id;
    const err = await rpcError(agent.client.pauseSandbox({ sandboxId: id }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/cannot checkpoint.*--net-disconnect-ok.*scripts\/setup\.sh/s);
    expect((await sh(agent.client, id, 'echo still-running')).stdout).toBe('still-running\n');
    const snap = await rpcError(agent.client.createSnapshot({ sandboxId: id, name: 'never' }));
    expect(snap.code).toBe(Code.FailedPrecondition);
    await agent.client.destroySandbox({ sandboxId: id });
  });

  it('destroys an expired sandbox it cannot pause', async () => {
    const { sandbox } = await agent.client.createSandbox({ timeoutSec: 1 });
    const id = sandbox!.id;
    await eventually(
      async () =>
        expect((await rpcError(agent.client.getSandbox({ sandboxId: id }))).code).toBe(Code.NotFound),
      20_000,
    );
    expect({ ...(await wrennHostState(testDataDir)), iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
  });
});
