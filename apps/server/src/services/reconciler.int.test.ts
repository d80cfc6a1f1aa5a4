import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, pollUntil } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import type { Db } from '../db/database.js';
import { testBackends } from '../testing/api.js';
import { describeOnBackends } from '../testing/databases.js';
import { insertSandboxRow, insertTemplateRow } from '../testing/rows.js';
import { sandboxView } from '../http/schemas.js';
import {
  CREATE_LEASE_RENEW_MS,
  LIST_TIMEOUT_MS,
  ORPHANED_CREATE_MS,
  reconcile,
  reconcileHosts,
} from './reconciler.js';
import { createSandbox } from './sandbox-lifecycle.js';
import type { AgentClient } from '../http/app-types.js';

const logger = createLogger({ name: 'test', level: 'silent', pretty: false });
const backends = await testBackends();

// Both databases: times read back as JavaScript Dates must equal the stored ones on each.
describeOnBackends('the reconciler', backends, (backend) => {
  let db: Db;
  let teamId: string;

  beforeAll(async () => {
    db = await backend.open();
    teamId = (await db.insertInto('teams').values({ name: 't' }).returning('id').executeTakeFirstOrThrow())
      .id;
  });
  afterAll(async () => {
    await db.destroy();
  });

  const row = (id: string, status: 'pending' | 'running' | 'paused', onTimeout: 'pause' | 'kill' = 'pause') =>
    insertSandboxRow(db, { id, team_id: teamId, status, timeout_sec: 0, on_timeout: onTimeout });

  /** An agent that lists `sandboxes` and records the ones it is asked to destroy. */
  function listingAgent(sandboxes: hostagent.Sandbox[]) {
    const destroyed: string[] = [];
    const agent = {
      destroySandbox: (req: { sandboxId?: string }) => {
        destroyed.push(req.sandboxId ?? '');
        return Promise.resolve(create(hostagent.DestroySandboxResponseSchema, {}));
      },
      flushSandboxMetrics: () => Promise.resolve(create(hostagent.FlushSandboxMetricsResponseSchema, {})),
      listSandboxes: () => Promise.resolve(create(hostagent.ListSandboxesResponseSchema, { sandboxes })),
    };
    return { agent, destroyed };
  }

  const onAgent = (
    id: string,
    status: hostagent.SandboxStatus,
    extra: { autoPaused?: boolean; statusReason?: string } = {},
  ) => create(hostagent.SandboxSchema, { id, status, ...extra });

  describe('reconcile (a fake agent list, a real database)', () => {
    it('follows the agent: auto-paused → paused (or destroyed when on timeout it should die), died → stopped with the reason, vanished → stopped', async () => {
      await row('autopaused1', 'running');
      await row('oomkilled01', 'running');
      await row('vanished001', 'paused');
      await row('unchanged01', 'running');
      await row('inflight001', 'pending');
      // Its server died after the agent made it: the row (times from now()) follows the agent.
      await row('createdon01', 'pending');
      await row('killontime', 'running', 'kill');
      // A create whose server died during it: pending for longer than any create takes.
      await row('orphan00001', 'pending');
      await db
        .updateTable('sandboxes')
        .set({ updated_at: new Date(Date.now() - ORPHANED_CREATE_MS - 1000) })
        .where('id', '=', 'orphan00001')
        .execute();
      const { agent, destroyed } = listingAgent([
        onAgent('autopaused1', hostagent.SandboxStatus.PAUSED, {
          autoPaused: true,
          statusReason: 'paused after 3 s without activity',
        }),
        onAgent('oomkilled01', hostagent.SandboxStatus.STOPPED, { statusReason: 'out of memory' }),
        onAgent('unchanged01', hostagent.SandboxStatus.RUNNING),
        onAgent('createdon01', hostagent.SandboxStatus.RUNNING),
        onAgent('killontime', hostagent.SandboxStatus.PAUSED, { autoPaused: true }),
      ]);
      expect(await reconcile(db, agent, logger)).toBe(6);
      expect(destroyed).toEqual(['killontime']);
      const rows = await db
        .selectFrom('sandboxes')
        .select(['id', 'status', 'status_reason', 'auto_paused'])
        .orderBy('id')
        .execute();
      expect(rows).toEqual([
        {
          id: 'autopaused1',
          status: 'paused',
          status_reason: 'paused after 3 s without activity',
          auto_paused: true,
        },
        { id: 'createdon01', status: 'running', status_reason: '', auto_paused: false },
        { id: 'inflight001', status: 'pending', status_reason: '', auto_paused: false },
        {
          id: 'killontime',
          status: 'stopped',
          status_reason: 'timed out (on timeout: kill)',
          auto_paused: false,
        },
        { id: 'oomkilled01', status: 'stopped', status_reason: 'out of memory', auto_paused: false },
        {
          id: 'orphan00001',
          status: 'stopped',
          status_reason: 'its create never finished (the control plane stopped during it)',
          auto_paused: false,
        },
        { id: 'unchanged01', status: 'running', status_reason: '', auto_paused: false },
        {
          id: 'vanished001',
          status: 'stopped',
          status_reason: 'the host no longer has this sandbox',
          auto_paused: false,
        },
      ]);
      // A second pass has nothing to do.
      expect(await reconcile(db, agent, logger)).toBe(0);
    });
  });

  describe('a template build', () => {
    it("has its sandbox destroyed once it ended, when the build's own destroy failed; not while it runs", async () => {
      const templateId = await insertTemplateRow(db, { team_id: teamId, name: 'built', origin: 'template' });
      const build = async (status: 'building' | 'error') =>
        (
          await db
            .insertInto('template_builds')
            .values({
              template_id: templateId,
              team_id: teamId,
              status,
              kind: 'snapshot',
              spec: '{}',
              vcpus: 1,
              memory_mb: 512,
              disk_mb: 1024,
              tags: [],
              created_by: null,
            })
            .returning('id')
            .executeTakeFirstOrThrow()
        ).id;
      await insertSandboxRow(db, {
        id: 'build0ended',
        team_id: teamId,
        status: 'running',
        build_id: await build('error'),
      });
      await insertSandboxRow(db, {
        id: 'build0runs',
        team_id: teamId,
        status: 'running',
        build_id: await build('building'),
      });
      const { agent, destroyed } = listingAgent([
        onAgent('build0ended', hostagent.SandboxStatus.RUNNING),
        onAgent('build0runs', hostagent.SandboxStatus.RUNNING),
      ]);
      await reconcile(db, agent, logger);
      expect(destroyed).toContain('build0ended');
      expect(destroyed).not.toContain('build0runs');
      const rows = await db
        .selectFrom('sandboxes')
        .select(['id', 'status', 'status_reason'])
        .where('id', 'in', ['build0ended', 'build0runs'])
        .orderBy('id')
        .execute();
      expect(rows).toEqual([
        { id: 'build0ended', status: 'stopped', status_reason: 'its template build ended' },
        { id: 'build0runs', status: 'running', status_reason: '' },
      ]);
    });
  });

  describe('the static host (no heartbeats)', () => {
    it('destroys what it holds that the control plane does not know or thinks stopped, and nothing else', async () => {
      await row('static0known', 'running');
      await row('static0stop', 'running');
      await db.updateTable('sandboxes').set({ status: 'stopped' }).where('id', '=', 'static0stop').execute();
      const { agent, destroyed } = listingAgent([
        onAgent('static0known', hostagent.SandboxStatus.RUNNING),
        onAgent('static0stop', hostagent.SandboxStatus.RUNNING),
        onAgent('static0stray', hostagent.SandboxStatus.PAUSED),
      ]);
      // Not the static host: its heartbeats do this, the reconciler leaves them.
      await reconcile(db, agent, logger, { hostId: randomUUID() });
      expect(destroyed).toEqual([]);
      await reconcile(db, agent, logger, { hostId: randomUUID(), isStaticHost: true });
      expect(destroyed.sort()).toEqual(['static0stop', 'static0stray']);
    });
  });

  describe('a create in flight', () => {
    it('renews its pending row, so the reconciler leaves it alone however long it takes', async () => {
      let finish!: () => void;
      const agentDone = new Promise<void>((resolve) => (finish = resolve));
      let asked!: (id: string) => void;
      const agentAsked = new Promise<string>((resolve) => (asked = resolve));
      const agent = {
        createSandbox: async (req: { sandboxId: string }) => {
          asked(req.sandboxId);
          await agentDone;
          return create(hostagent.CreateSandboxResponseSchema, {
            sandbox: onAgent(req.sandboxId, hostagent.SandboxStatus.RUNNING),
          });
        },
        listSandboxes: () => Promise.resolve(create(hostagent.ListSandboxesResponseSchema, {})),
        flushSandboxMetrics: () => Promise.resolve(create(hostagent.FlushSandboxMetricsResponseSchema, {})),
        destroySandbox: () => Promise.resolve(create(hostagent.DestroySandboxResponseSchema, {})),
      } as unknown as AgentClient;
      const hosts = {
        agent: () => Promise.resolve(agent),
        place: () => Promise.resolve(null),
        route: () => Promise.reject(new Error('not used')),
      };
      const creating = createSandbox({ db, hosts }, teamId, {
        template: 'base',
        resolved: { agentName: 'base', name: 'base' },
        timeoutSec: 0,
        metadata: {},
        env: {},
      });
      const id = await agentAsked;
      const updatedAt = async () =>
        (await db.selectFrom('sandboxes').select('updated_at').where('id', '=', id).executeTakeFirstOrThrow())
          .updated_at;
      // Backdated past the lease, as if nobody renewed it: the next renewal brings it back.
      await db
        .updateTable('sandboxes')
        .set({ updated_at: new Date(Date.now() - ORPHANED_CREATE_MS - 1000) })
        .where('id', '=', id)
        .execute();
      const renewed = await pollUntil(
        async () => (await updatedAt()).getTime() > Date.now() - ORPHANED_CREATE_MS || undefined,
        { timeoutMs: CREATE_LEASE_RENEW_MS * 3, intervalMs: 100 },
      );
      expect(renewed).toBe(true);
      // Not on the agent's list yet, but renewed: left to its request (the first test's rows may change).
      await reconcile(db, agent, logger);
      const status = async () =>
        (await db.selectFrom('sandboxes').select('status').where('id', '=', id).executeTakeFirstOrThrow())
          .status;
      expect(await status()).toBe('pending');
      finish();
      const { row } = await creating;
      expect(row).toMatchObject({ id, status: 'running' });
      await db.deleteFrom('sandboxes').where('id', '=', id).execute();
    });
  });

  describe('reconcileHosts', () => {
    it("carries the agent's count of OOM kills and the last one into the row, and the API view shows them", async () => {
      await row('oomsurvivor', 'running');
      const at = new Date('2026-12-07T10:00:00.000Z');
      const listing = (kills: number) =>
        create(hostagent.ListSandboxesResponseSchema, {
          sandboxes: [
            create(hostagent.SandboxSchema, {
              id: 'oomsurvivor',
              status: hostagent.SandboxStatus.RUNNING,
              oomKills: kills,
              lastOomKill: kills
                ? { at: timestampFromDate(at), pid: 42, command: 'python3 -c x', memoryBytes: 600n << 20n }
                : undefined,
            }),
          ],
        });
      let kills = 0;
      const agent = {
        destroySandbox: () => Promise.resolve(create(hostagent.DestroySandboxResponseSchema, {})),
        flushSandboxMetrics: () => Promise.resolve(create(hostagent.FlushSandboxMetricsResponseSchema, {})),
        listSandboxes: () => Promise.resolve(listing(kills)),
      };
      const view = async () =>
        sandboxView(
          await db
            .selectFrom('sandboxes')
            .selectAll()
            .where('id', '=', 'oomsurvivor')
            .executeTakeFirstOrThrow(),
        );
      await reconcile(db, agent, logger);
      expect(await view()).toMatchObject({ status: 'running', oom_kills: 0, last_oom_kill: null });
      kills = 3;
      expect(await reconcile(db, agent, logger)).toBeGreaterThanOrEqual(1);
      expect(await view()).toMatchObject({
        status: 'running',
        oom_kills: 3,
        last_oom_kill: {
          at: at.toISOString(),
          pid: 42,
          command: 'python3 -c x',
          memory_bytes: 600 * 1024 * 1024,
        },
      });
      // Nothing new: the row is left alone.
      expect(await reconcile(db, agent, logger)).toBe(0);
      await db.deleteFrom('sandboxes').where('id', '=', 'oomsurvivor').execute();
    });

    it('reconciles the hosts that answer while one does not (it is only skipped when its call times out)', async () => {
      const [quiet, answering] = await Promise.all(
        ['quiet', 'answering'].map(
          async () =>
            (
              await db
                .insertInto('hosts')
                .values({ kind: 'platform', status: 'online', address: '127.0.0.1:1' })
                .returning('id')
                .executeTakeFirstOrThrow()
            ).id,
        ),
      );
      await insertSandboxRow(db, { id: 'onquiet0001', team_id: teamId, status: 'running', host_id: quiet });
      await insertSandboxRow(db, {
        id: 'onanswer001',
        team_id: teamId,
        status: 'running',
        host_id: answering,
      });
      let askedQuiet: { timeoutMs?: number } | undefined;
      const agents = {
        [quiet!]: {
          // A host cut off: its call hangs until the caller's timeout, which this fake leaves to the test.
          listSandboxes: (_req: unknown, opts?: { timeoutMs?: number }) => {
            askedQuiet = opts;
            return new Promise<never>(() => undefined);
          },
        },
        [answering!]: {
          listSandboxes: () =>
            Promise.resolve(
              create(hostagent.ListSandboxesResponseSchema, {
                sandboxes: [onAgent('onanswer001', hostagent.SandboxStatus.PAUSED)],
              }),
            ),
          flushSandboxMetrics: () => Promise.resolve(create(hostagent.FlushSandboxMetricsResponseSchema, {})),
        },
      };
      const hosts = { agent: (id: string | null) => Promise.resolve(agents[id!] as never) };
      void reconcileHosts(db, hosts, logger);
      await pollUntil(
        async () => {
          const r = await db
            .selectFrom('sandboxes')
            .select('status')
            .where('id', '=', 'onanswer001')
            .executeTakeFirst();
          return r?.status === 'paused' ? true : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 20 },
      );
      expect(askedQuiet?.timeoutMs).toBe(LIST_TIMEOUT_MS);
      await db
        .updateTable('hosts')
        .set({ status: 'deleted' })
        .where('id', 'in', [quiet!, answering!])
        .execute();
    });
  });
});
