import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { hostagent } from '@wrenn/contracts';
import {
  rpcError,
  sh,
  startAgentProcess,
  testDataDir,
  type AgentClient,
  type AgentProcess,
} from './support/agent-process.js';
import { EMPTY_HOST_STATE, eventually, wrennHostState } from './support/host-state.js';

// Warm pools (docs/warm-pool.md) with real gVisor: the agent keeps sandboxes of a template running,
// invisible, and CreateSandbox claims one.

const { PAUSED, RUNNING } = hostagent.SandboxStatus;
const POOLED = /^pool-[0-9a-f]{16}$/;

async function poolOf(client: AgentClient, template: string) {
  const { pools } = await client.listWarmPools({});
  return pools.find((p) => p.template === template);
}

async function readyPool(client: AgentClient, template: string, ready: number) {
  await eventually(async () => {
    expect((await poolOf(client, template))?.ready).toBe(ready);
  }, 90_000);
}

/** What must differ between two clones: env, boot id, random bytes, hostname as it is. */
async function identity(client: AgentClient, id: string) {
  const out = await sh(
    client,
    id,
    'echo "$MARK"; cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; hostname',
  );
  expect(out.exitCode).toBe(0);
  const [mark, bootId, random, hostname] = out.stdout.split('\n');
  return { mark, bootId, random, hostname };
}

async function expectOnlyAgentRules() {
  const state = await wrennHostState(testDataDir);
  expect({ ...state, iptablesRules: [] }).toEqual(EMPTY_HOST_STATE);
  expect(state.iptablesRules.length).toBeGreaterThan(0);
}

describe('warm pool of an image template (real gVisor)', () => {
  let agent: AgentProcess;
  beforeAll(async () => {
    agent = await startAgentProcess({ WRENN_WARM_POOL: 'base=2' });
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('fills, serves creates, refills, and its sandboxes are nobody’s until claimed', async () => {
    const { client } = agent;
    await readyPool(client, 'base', 2);
    // Two pooled sandboxes really run (the host's own tables), yet no sandbox is listed.
    const filled = await wrennHostState(testDataDir);
    expect(filled.netns).toHaveLength(2);
    expect(filled.sandboxDirs).toHaveLength(2);
    for (const dir of filled.sandboxDirs) expect(dir).toMatch(POOLED);
    expect((await client.listSandboxes({})).sandboxes).toEqual([]);

    const a = (await client.createSandbox({ sandboxId: 'wpaaaaaaaa', env: { MARK: 'a' }, timeoutSec: 600 }))
      .sandbox!;
    const b = (
      await client.createSandbox({ sandboxId: 'wpbbbbbbbb', env: { MARK: 'b' }, metadata: { k: 'v' } })
    ).sandbox!;
    try {
      expect(await poolOf(client, 'base')).toMatchObject({ claims: 2n, misses: 0n });
      expect(a).toMatchObject({ id: 'wpaaaaaaaa', status: RUNNING, template: 'base', timeoutSec: 600 });
      expect(b.metadata).toEqual({ k: 'v' });
      expect(a.envdAccessToken).not.toBe(b.envdAccessToken);
      expect((await client.listSandboxes({})).sandboxes.map((s) => s.id).sort()).toEqual([
        'wpaaaaaaaa',
        'wpbbbbbbbb',
      ]);

      // Clones must not share what they were given or what is random.
      const [ia, ib] = [await identity(client, a.id), await identity(client, b.id)];
      expect([ia.mark, ib.mark]).toEqual(['a', 'b']);
      expect(ia.bootId).toMatch(/^[0-9a-f-]{36}$/);
      expect(ia.bootId).not.toBe(ib.bootId);
      expect(ia.random).toMatch(/^[0-9a-f]{32}$/);
      expect(ia.random).not.toBe(ib.random);
      expect(ia.hostname).toBe(ib.hostname);

      // The pool refills behind the claims.
      await readyPool(client, 'base', 2);
      expect((await poolOf(client, 'base'))?.refills).toBeGreaterThanOrEqual(4n);

      // A claimed sandbox pauses and resumes with its processes, files and identity.
      await sh(client, a.id, 'echo kept > /home/user/kept; nohup sleep 1000 >/dev/null 2>&1 &');
      expect((await client.pauseSandbox({ sandboxId: a.id })).sandbox?.status).toBe(PAUSED);
      expect((await client.resumeSandbox({ sandboxId: a.id })).sandbox?.status).toBe(RUNNING);
      const after = await sh(client, a.id, 'cat /home/user/kept; pgrep -x sleep >/dev/null && echo sleeping');
      expect(after.stdout).toBe('kept\nsleeping\n');
      expect((await identity(client, a.id)).mark).toBe('a');
      expect((await identity(client, a.id)).bootId).toBe(ia.bootId);

      // A snapshot of a claimed sandbox works, and sandboxes start from it.
      await client.deleteSnapshot({ name: 'wpfromclaim' }).catch(() => undefined);
      await client.createSnapshot({ sandboxId: a.id, name: 'wpfromclaim' });
      try {
        const copy = (await client.createSandbox({ template: 'wpfromclaim' })).sandbox!;
        expect((await sh(client, copy.id, 'cat /home/user/kept')).stdout).toBe('kept\n');
        await client.destroySandbox({ sandboxId: copy.id });
        expect((await sh(client, a.id, 'cat /home/user/kept')).stdout).toBe('kept\n');
      } finally {
        await client.deleteSnapshot({ name: 'wpfromclaim' });
      }

      // Other sizes are a miss, served by a boot.
      const big = (await client.createSandbox({ memoryMb: 768 })).sandbox!;
      expect((await sh(client, big.id, 'echo big')).stdout).toBe('big\n');
      await client.destroySandbox({ sandboxId: big.id });
      expect(await poolOf(client, 'base')).toMatchObject({ claims: 2n, misses: 1n });
    } finally {
      await client.destroySandbox({ sandboxId: a.id });
      await client.destroySandbox({ sandboxId: b.id });
    }

    // Size 0 empties it before answering; then nothing of Wrenn is left but the agent's rules.
    expect((await client.setWarmPool({ template: 'base', size: 0 })).pool).toMatchObject({
      size: 0,
      ready: 0,
    });
    await expectOnlyAgentRules();
  });

  it('refuses bad sizes and templates it does not have, naming the field', async () => {
    const { client } = agent;
    const negative = await rpcError(client.setWarmPool({ template: 'base', size: -1 }));
    expect(negative.code).toBe(Code.InvalidArgument);
    expect(negative.rawMessage).toMatch(/^size: /);
    const badName = await rpcError(client.setWarmPool({ template: 'No Such', size: 1 }));
    expect(badName.code).toBe(Code.InvalidArgument);
    expect(badName.rawMessage).toMatch(/^template: /);
    const missing = await rpcError(client.setWarmPool({ template: 'no-such-template', size: 1 }));
    expect(missing.code).toBe(Code.NotFound);
  });

  it('stopping the agent destroys its pooled sandboxes: nothing of Wrenn is left', async () => {
    await agent.client.setWarmPool({ template: 'base', size: 2 });
    await readyPool(agent.client, 'base', 2);
    expect((await wrennHostState(testDataDir)).sandboxDirs).toHaveLength(2);
    await agent.stop();
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });
});

describe('warm pool of a snapshot template (real gVisor)', () => {
  it('restores from the snapshot; clones differ in token, env and randomness; the pool goes with the template', async () => {
    const agent = await startAgentProcess();
    const { client } = agent;
    const created: string[] = [];
    try {
      const source = (await client.createSandbox({})).sandbox!;
      created.push(source.id);
      await sh(client, source.id, 'echo from-snapshot > /home/user/origin');
      await client.deleteSnapshot({ name: 'wpsnap' }).catch(() => undefined);
      await client.createSnapshot({ sandboxId: source.id, name: 'wpsnap' });
      await client.setWarmPool({ template: 'wpsnap', size: 2 });
      await readyPool(client, 'wpsnap', 2);
      const ids = ['wpsnapaaaa', 'wpsnapbbbb'];
      for (const [i, sandboxId] of ids.entries()) {
        await client.createSandbox({ template: 'wpsnap', sandboxId, env: { MARK: `m${i}` } });
        created.push(sandboxId);
      }
      expect(await poolOf(client, 'wpsnap')).toMatchObject({ claims: 2n });
      const [ia, ib] = [await identity(client, ids[0]!), await identity(client, ids[1]!)];
      expect([ia.mark, ib.mark]).toEqual(['m0', 'm1']);
      expect(ia.random).not.toBe(ib.random);
      // Known, and the same for every create from a snapshot, pooled or not: gVisor restores
      // /proc/sys/kernel/random/boot_id with the checkpoint, so clones of one snapshot share it
      // (docs/warm-pool.md). This is why pools of image templates boot their sandboxes.
      expect(ia.bootId).toBe(ib.bootId);
      for (const id of ids)
        expect((await sh(client, id, 'cat /home/user/origin')).stdout).toBe('from-snapshot\n');
      const tokens = new Set(
        (await client.listSandboxes({})).sandboxes
          .filter((s) => ids.includes(s.id))
          .map((s) => s.envdAccessToken),
      );
      expect(tokens.size).toBe(2);
      // Deleting the template takes its pool (and the pooled sandboxes) with it.
      for (const id of ids) await client.destroySandbox({ sandboxId: id });
      created.splice(1);
      await client.deleteSnapshot({ name: 'wpsnap' });
      expect(await poolOf(client, 'wpsnap')).toBeUndefined();
      await client.destroySandbox({ sandboxId: source.id });
      created.splice(0);
      await expectOnlyAgentRules();
    } finally {
      for (const sandboxId of created) await client.destroySandbox({ sandboxId }).catch(() => undefined);
      await client.deleteSnapshot({ name: 'wpsnap' }).catch(() => undefined);
      await agent.stop();
    }
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });
});

describe('warm pool and an agent that dies (real gVisor)', () => {
  it('kill -9: the next agent removes the pooled sandboxes and adopts a claimed one left paused', async () => {
    const first = await startAgentProcess({ WRENN_WARM_POOL: 'base=2' });
    let claimed = '';
    try {
      await readyPool(first.client, 'base', 2);
      claimed = (await first.client.createSandbox({ sandboxId: 'wpkilled01', env: { MARK: 'k' } })).sandbox!
        .id;
      await sh(first.client, claimed, 'echo survived > /home/user/note');
      await first.client.pauseSandbox({ sandboxId: claimed });
      await readyPool(first.client, 'base', 2);
    } finally {
      await first.kill();
    }
    const leftover = await wrennHostState(testDataDir);
    expect(leftover.runscProcesses.length).toBeGreaterThan(0);

    const second = await startAgentProcess({}, { keepPaused: true });
    try {
      const state = await wrennHostState(testDataDir);
      // Only the paused sandbox's directory stays (it carries the pooled name it was made under).
      expect(state.sandboxDirs).toHaveLength(1);
      expect(state.sandboxDirs[0]).toMatch(POOLED);
      expect({ ...state, iptablesRules: [], sandboxDirs: [] }).toEqual(EMPTY_HOST_STATE);
      const { sandboxes } = await second.client.listSandboxes({});
      expect(sandboxes.map((s) => [s.id, s.status])).toEqual([['wpkilled01', PAUSED]]);
      await second.client.resumeSandbox({ sandboxId: 'wpkilled01' });
      expect((await sh(second.client, 'wpkilled01', 'cat /home/user/note; echo "$MARK"')).stdout).toBe(
        'survived\nk\n',
      );
      await second.client.destroySandbox({ sandboxId: 'wpkilled01' });
      await expectOnlyAgentRules();
    } finally {
      await second.stop();
    }
    expect(await wrennHostState(testDataDir)).toEqual(EMPTY_HOST_STATE);
  });
});
