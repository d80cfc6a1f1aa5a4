import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  rpcError,
  installDir,
  startAgentProcess,
  testDataDir,
  type AgentProcess,
} from './support/agent-process.js';
import { EMPTY_HOST_STATE, wrennHostState } from './support/host-state.js';

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess();
});

afterAll(async () => {
  await agent?.stop();
});

describe('bad input gets a precise error and changes nothing', () => {
  it('unknown sandbox id → NotFound, for every call that takes one', async () => {
    const sandboxId = 'doesnotexist0000';
    const calls = [
      agent.client.getSandbox({ sandboxId }),
      agent.client.destroySandbox({ sandboxId }),
      agent.client.exec({ sandboxId, command: { cmd: 'true' } }),
      agent.client.readFile({ sandboxId, path: '/etc/hostname' }),
      agent.client.writeFile({ sandboxId, path: '/tmp/x', content: Buffer.from('x') }),
    ];
    for (const call of calls) {
      const err = await rpcError(call);
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toContain(sandboxId);
    }
  });

  it.each([
    [{ vcpus: -1 }, 'vcpus'],
    [{ vcpus: 4096 }, 'vcpus'],
    [{ memoryMb: -512 }, 'memory_mb'],
    [{ memoryMb: 10_000_000 }, 'memory_mb'],
    [{ memoryMb: 16 }, 'memory_mb'],
    [{ diskMb: -1 }, 'disk_mb'],
    [{ diskMb: 2_000_000_000 }, 'disk_mb'],
    [{ template: '../etc' }, 'template'],
    [{ template: '../../../../' }, 'template'],
    [{ template: 'base/../../etc' }, 'template'],
    [{ sandboxId: '../x' }, 'sandbox_id'],
    [{ env: { 'BAD-NAME': 'x' } }, 'env.BAD-NAME'],
  ])('CreateSandbox(%o) → InvalidArgument naming %s', async (params, field) => {
    const before = await agent.client.listSandboxes({});
    const err = await rpcError(agent.client.createSandbox(params));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage.startsWith(`${field}:`)).toBe(true);
    const after = await agent.client.listSandboxes({});
    expect(after.sandboxes.length).toBe(before.sandboxes.length);
  });

  it('an unknown template → NotFound, and nothing is left behind', async () => {
    const err = await rpcError(agent.client.createSandbox({ template: 'nosuchtemplate' }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain('nosuchtemplate');
    const state = await wrennHostState(testDataDir);
    expect(state.sandboxDirs).toEqual([]);
    expect(state.netns).toEqual([]);
  });

  it('malformed sandbox ids and commands → InvalidArgument naming the field', async () => {
    expect((await rpcError(agent.client.getSandbox({ sandboxId: 'A/../b' }))).rawMessage).toMatch(
      /^sandbox_id:/,
    );
    const { sandbox } = await agent.client.createSandbox({});
    try {
      const sandboxId = sandbox!.id;
      const cases: [Promise<unknown>, string][] = [
        [agent.client.exec({ sandboxId }), 'command:'],
        [agent.client.exec({ sandboxId, command: { cmd: '' } }), 'command.cmd:'],
        [agent.client.exec({ sandboxId, command: { cmd: 'true', timeoutMs: -5 } }), 'command.timeout_ms:'],
        [agent.client.exec({ sandboxId, command: { cmd: 'true', cwd: 'relative' } }), 'command.cwd:'],
        [agent.client.exec({ sandboxId, command: { cmd: 'true', user: 'root;rm' } }), 'command.user:'],
        [agent.client.readFile({ sandboxId, path: '' }), 'path:'],
      ];
      for (const [call, prefix] of cases) {
        const err = await rpcError(call);
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.rawMessage.startsWith(prefix)).toBe(true);
      }
    } finally {
      await agent.client.destroySandbox({ sandboxId: sandbox!.id });
    }
  });

  it('a create that fails after resources exist rolls all of them back', async () => {
    // A template whose rootfs is empty: network slot and disk are built, then the runtime cannot
    // start the sandbox's init. Everything acquired before that must be undone.
    const template = 'e2e-broken';
    const rootfs = path.join(installDir, 'images', template, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    try {
      const err = await rpcError(agent.client.createSandbox({ template }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toMatch(/sandbox exited while starting from template e2e-broken/);
      const state = await wrennHostState(testDataDir);
      expect({ ...state, iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
      expect((await agent.client.listSandboxes({})).sandboxes).toEqual([]);
      // And the agent is fine afterwards.
      const { sandbox } = await agent.client.createSandbox({});
      await agent.client.destroySandbox({ sandboxId: sandbox!.id });
    } finally {
      await rm(path.dirname(rootfs), { recursive: true, force: true });
    }
  });
});
