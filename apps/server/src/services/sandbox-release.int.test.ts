import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError, createLogger } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import { openDatabase, type Db } from '../db/database.js';
import type { AgentClient } from '../http/app-types.js';
import { insertSandboxRow } from '../testing/rows.js';
import { singleAgent } from './fleet/host-agents.js';
import { reconcile } from './reconciler.js';
import { destroySandbox, pauseSandbox, resumeSandbox } from './sandbox-lifecycle.js';
import { createTeamSnapshot } from './templates.js';

// Every path that ends or changes a sandbox's network identity tells the proxy
// (`sandboxReleased`), so it never hands that sandbox's connections to whatever next has its
// address. A fake agent, a real database.

const logger = createLogger({ name: 'test', level: 'silent', pretty: false });
let db: Db;
let teamId: string;
let released: string[];
let failNext: ConnectError | undefined;

const sandbox = (id: string, status: hostagent.SandboxStatus) =>
  create(hostagent.SandboxSchema, { id, status, timeoutSec: 300 });

function answer<T>(value: T): Promise<T> {
  const err = failNext;
  failNext = undefined;
  return err ? Promise.reject(err) : Promise.resolve(value);
}

const agent = {
  destroySandbox: () => answer(create(hostagent.DestroySandboxResponseSchema, {})),
  pauseSandbox: (r: { sandboxId: string }) =>
    answer({ sandbox: sandbox(r.sandboxId, hostagent.SandboxStatus.PAUSED) }),
  resumeSandbox: (r: { sandboxId: string }) =>
    answer({ sandbox: sandbox(r.sandboxId, hostagent.SandboxStatus.RUNNING) }),
  createSnapshot: () =>
    answer({ template: create(hostagent.TemplateSchema, { vcpus: 1, memoryMb: 512, diskMb: 1024 }) }),
  getSandbox: (r: { sandboxId: string }) =>
    Promise.resolve({ sandbox: sandbox(r.sandboxId, hostagent.SandboxStatus.RUNNING) }),
  flushSandboxMetrics: () => Promise.resolve(create(hostagent.FlushSandboxMetricsResponseSchema, {})),
  listSandboxes: () =>
    Promise.resolve({
      sandboxes: [
        sandbox('recpaused', hostagent.SandboxStatus.PAUSED),
        sandbox('recrunning', hostagent.SandboxStatus.RUNNING),
      ],
    }),
} as unknown as AgentClient;

const deps = () => ({ db, hosts: singleAgent(agent), sandboxReleased: (id: string) => released.push(id) });

beforeAll(async () => {
  db = await openDatabase({ kind: 'pglite', dir: 'memory://' }, logger);
  teamId = (await db.insertInto('teams').values({ name: 't' }).returning('id').executeTakeFirstOrThrow()).id;
});
afterAll(async () => {
  await db.destroy();
});
beforeEach(() => {
  released = [];
  failNext = undefined;
});

describe('the server tells the proxy when a sandbox is released', () => {
  it('on destroy, pause, resume and snapshot, also when the agent call failed', async () => {
    await insertSandboxRow(db, { id: 'relsbx01', team_id: teamId, status: 'running' });
    await pauseSandbox(deps(), 'relsbx01');
    await resumeSandbox(deps(), 'relsbx01');
    await createTeamSnapshot(deps(), teamId, 'relsbx01', 'snap-of-relsbx01');
    failNext = new ConnectError('the sandbox is resuming', Code.FailedPrecondition);
    await expect(pauseSandbox(deps(), 'relsbx01')).rejects.toThrow(/resuming/);
    await destroySandbox(deps(), 'relsbx01');
    expect(released).toEqual(['relsbx01', 'relsbx01', 'relsbx01', 'relsbx01', 'relsbx01']);
  });

  it('when the reconciler finds a sandbox paused or stopped behind its back, and not otherwise', async () => {
    await insertSandboxRow(db, { id: 'recpaused', team_id: teamId, status: 'running' });
    await insertSandboxRow(db, { id: 'recrunning', team_id: teamId, status: 'running' });
    await insertSandboxRow(db, { id: 'recvanished', team_id: teamId, status: 'running' });
    await reconcile(db, agent, logger, { sandboxReleased: (id) => released.push(id) });
    expect(released.sort()).toEqual(['recpaused', 'recvanished']);
  });
});
