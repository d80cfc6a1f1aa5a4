import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeOnBackends, postgresOnly } from '@wrenn/server/testing';
import { Fleet, waitFor, type DevHost } from './support/fleet.js';

// Work moving between real hosts (docs/fleet.md, "Moving work"): a snapshot made on one dev host
// used on another, a paused sandbox moved and resumed with its processes, a drain, and deletes
// reaching every host. Real agents in namespaces of their own, real gVisor checkpoints, one
// control plane on PostgreSQL; what each agent holds is asked of the agent itself.

const backends = await postgresOnly();

/** Dev host names of this file (no other e2e file uses them). */
const HOSTS = ['ma', 'mb'];

describeOnBackends('work moving between dev hosts', backends, (backend) => {
  let fleet: Fleet;
  const hosts: { id: string; dev: DevHost }[] = [];
  let key: string;

  const other = (hostId: string) => hosts.find((h) => h.id !== hostId)!;
  const hostOf = (hostId: string) => hosts.find((h) => h.id === hostId)!;
  const setDraining = (hostId: string, draining: boolean) =>
    fleet.sql.query('update hosts set draining = $2 where id = $1', [hostId, draining]);
  const agentOf = (hostId: string) => fleet.agent(hostId, hostOf(hostId).dev.address);
  const heldBy = async (hostId: string) =>
    (await (await agentOf(hostId)).listSandboxes({})).sandboxes.map((s) => s.id);
  const templatesOf = async (hostId: string) =>
    (await (await agentOf(hostId)).listTemplates({})).templates.map((t) => t.name);
  /** Starts a counter in the sandbox (its pid in /tmp/counter.pid) and writes a file. */
  const giveItLife = async (id: string) => {
    const started = await fleet.exec(
      key,
      id,
      `echo kept > /home/user/kept && (setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done' >/dev/null 2>&1 </dev/null & echo $! > /tmp/counter.pid) && sleep 0.5 && cat /tmp/counter.pid`,
    );
    expect(started.body).toMatchObject({ exit_code: 0 });
    return (started.body as { stdout: string }).stdout.trim();
  };
  /** The file is there and the same counter process still counts. */
  const expectAlive = async (id: string, pid: string) => {
    const first = await fleet.exec(key, id, `cat /home/user/kept; kill -0 ${pid} && cat /tmp/count`);
    expect(first.body).toMatchObject({ exit_code: 0 });
    const [kept, count] = (first.body as { stdout: string }).stdout.trim().split('\n');
    expect(kept).toBe('kept');
    await new Promise((r) => setTimeout(r, 600));
    const later = await fleet.exec(key, id, 'cat /tmp/count');
    expect(later.body, `${later.status} ${JSON.stringify(later.body)}`).toMatchObject({ exit_code: 0 });
    expect(Number((later.body as { stdout: string }).stdout)).toBeGreaterThan(Number(count));
  };

  beforeAll(async () => {
    fleet = await Fleet.start(backend.db!, {
      serverEnv: {
        WRENN_HEARTBEAT_SEC: '1',
        WRENN_HOST_STALE_SEC: '10',
        WRENN_PAUSED_REPLICA_AFTER_SEC: '1',
      },
      agentEnv: { WRENN_HEARTBEAT_SEC: '1', WRENN_HEARTBEAT_GRACE: '3', WRENN_SANDBOX_NAMESERVERS: '' },
    });
    const replica = await fleet.addReplica('a');
    fleet.front.route([replica.url]);
    for (const name of HOSTS) hosts.push(await fleet.addHost(name));
    key = (await fleet.signup(`fleet-moves-${Date.now()}@example.com`)).key;
  });

  afterAll(async () => {
    await fleet?.close();
  });

  it('a snapshot made on one host starts sandboxes on another (copied, checked), with its processes; deleted, it leaves every host', async () => {
    const made: string[] = [];
    try {
      const source = await fleet.createSandbox(key);
      made.push(source.id);
      const pid = await giveItLife(source.id);
      const snap = await fleet.call('POST', '/v1/snapshots', {
        key,
        body: { sandbox_id: source.id, name: 'moves' },
      });
      expect(snap.status, JSON.stringify(snap.body)).toBe(201);
      const agentName = `snap-${snap.body.id as string}`;
      const away = other(source.host_id);
      expect(await templatesOf(away.id)).not.toContain(agentName);

      // The host that holds it takes nothing new: the sandbox goes to the other, and the files first.
      await setDraining(source.host_id, true);
      try {
        const res = await fleet.call('POST', '/v1/sandboxes', {
          key,
          body: { template: 'moves', timeout_sec: 0 },
        });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        made.push(res.body.id as string);
        expect(res.body.host_id).toBe(away.id);
        expect(await templatesOf(away.id)).toContain(agentName);
        await expectAlive(res.body.id as string, pid);
      } finally {
        await setDraining(source.host_id, false);
      }

      expect((await fleet.call('DELETE', `/v1/snapshots/${snap.body.id as string}`, { key })).status).toBe(
        204,
      );
      expect(await templatesOf(source.host_id)).not.toContain(agentName);
      expect(await templatesOf(away.id)).not.toContain(agentName);
    } finally {
      await fleet.destroy(key, made);
    }
  });

  it('a paused sandbox moves to another host and resumes there with its files and processes; the old host keeps nothing', async () => {
    const s = await fleet.createSandbox(key);
    try {
      const pid = await giveItLife(s.id);
      expect((await fleet.call('POST', `/v1/sandboxes/${s.id}/pause`, { key })).status).toBe(200);
      const away = other(s.host_id);
      const moved = await fleet.call('POST', `/v1/admin/sandboxes/${s.id}/move`, {
        bearer: fleet.adminToken,
        body: { host_id: away.id },
      });
      expect(moved, JSON.stringify(moved.body)).toMatchObject({ status: 200, body: { host_id: away.id } });
      expect(await heldBy(s.host_id)).not.toContain(s.id);
      expect(await heldBy(away.id)).toContain(s.id);
      expect(await fleet.sandbox(key, s.id)).toMatchObject({ status: 'paused', host_id: away.id });

      expect((await fleet.call('POST', `/v1/sandboxes/${s.id}/resume`, { key, body: {} })).status).toBe(200);
      await expectAlive(s.id, pid);
      // A moving sandbox must not be moved again while running.
      const again = await fleet.call('POST', `/v1/admin/sandboxes/${s.id}/move`, {
        bearer: fleet.adminToken,
        body: {},
      });
      expect(again).toMatchObject({ status: 409, body: { code: 'failed_precondition' } });
    } finally {
      await fleet.destroy(key, [s.id]);
    }
  });

  it('drain: the running sandboxes of a host are paused, moved and resumed on another; the host takes none until undrained', async () => {
    const s = await fleet.createSandbox(key);
    try {
      const pid = await giveItLife(s.id);
      const drained = await fleet.call('POST', `/v1/admin/hosts/${s.host_id}/drain`, {
        bearer: fleet.adminToken,
      });
      const away = other(s.host_id);
      expect(drained, JSON.stringify(drained.body)).toMatchObject({
        status: 200,
        body: { moved: [{ sandbox_id: s.id, host_id: away.id, resumed: true }], failed: [] },
      });
      expect(await fleet.sandbox(key, s.id)).toMatchObject({ status: 'running', host_id: away.id });
      await expectAlive(s.id, pid);
      expect(await heldBy(s.host_id)).not.toContain(s.id);
      const next = await fleet.createSandbox(key);
      try {
        expect(next.host_id).toBe(away.id);
      } finally {
        await fleet.destroy(key, [next.id]);
      }
      const undrained = await fleet.call('DELETE', `/v1/admin/hosts/${s.host_id}/drain`, {
        bearer: fleet.adminToken,
      });
      expect(undrained.status).toBe(204);
    } finally {
      await fleet.destroy(key, [s.id]);
    }
  });

  it('a lost host strands no paused work: its paused sandbox resumes on the host that holds its copy, with its processes; the host, back, keeps nothing of it', async () => {
    const s = await fleet.createSandbox(key);
    const home = hostOf(s.host_id);
    const away = other(s.host_id);
    try {
      const pid = await giveItLife(s.id);
      expect((await fleet.call('POST', `/v1/sandboxes/${s.id}/pause`, { key })).status).toBe(200);
      // Paused for a second (this file's setting), the leader copies it to the other host.
      await waitFor(
        'a whole copy on the other host',
        async () => {
          const { rows } = await fleet.sql.query<{ replica_host_id: string | null; replica_at: Date | null }>(
            'select replica_host_id, replica_at from sandboxes where id = $1',
            [s.id],
          );
          return rows[0]?.replica_at ? rows[0] : undefined;
        },
        120_000,
      ).then((row) => expect(row.replica_host_id).toBe(away.id));
      expect(await heldBy(away.id)).toContain(s.id);

      await home.dev.kill();
      await fleet.waitHost(home.id, 'unreachable');
      await fleet.waitSandbox(key, s.id, 'missing');
      const resumed = await fleet.call('POST', `/v1/sandboxes/${s.id}/resume`, { key, body: {} });
      expect(resumed, JSON.stringify(resumed.body)).toMatchObject({
        status: 200,
        body: { status: 'running', host_id: away.id },
      });
      await expectAlive(s.id, pid);

      await fleet.restartHost(home.dev);
      await fleet.waitHost(home.id, 'online');
      await waitFor('the returned host to drop its stale copy', async () =>
        (await heldBy(home.id)).includes(s.id) ? undefined : true,
      );
      await waitFor("the stale copy's files gone", async () =>
        (await home.dev.sandboxDirs()).includes(s.id) ? undefined : true,
      );
      expect(await fleet.sandbox(key, s.id)).toMatchObject({ status: 'running', host_id: away.id });
      await expectAlive(s.id, pid);
    } finally {
      await fleet.destroy(key, [s.id]);
    }
  });
});
