import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostagent } from '@wrenn/contracts';
import { describeOnBackends, postgresOnly } from '@wrenn/server/testing';
import { Fleet, waitFor, type DevHost, type ServerReplica, type Session } from './support/fleet.js';

// The fleet end to end (docs/fleet.md): three platform dev hosts and a BYOC one (real agents in
// network namespaces of their own, real gVisor sandboxes), two control-plane replicas (a third for
// the refresh fault) on one PostgreSQL database, agents reaching them through a TCP front. Every
// check goes through the real API, and what an agent holds is read from the agent itself.

const backends = await postgresOnly();

/** Dev host names of this file (no other e2e file uses them). */
const PLATFORM_HOSTS = ['fa', 'fb', 'fc'];
const BYOC_HOST = 'fd';
const STALE_SEC = 5;

describeOnBackends('a fleet of dev hosts under two control-plane replicas', backends, (backend) => {
  let fleet: Fleet;
  let replicaA: ServerReplica;
  let replicaB: ServerReplica;
  const platform: { id: string; dev: DevHost }[] = [];
  let team: Session & { key: string };
  let byoc: { team: Session & { key: string }; host: { id: string; dev: DevHost } } | undefined;

  const devOf = (hostId: string) => {
    const host = platform.find((h) => h.id === hostId) ?? (byoc?.host.id === hostId ? byoc.host : undefined);
    if (!host) throw new Error(`no dev host is host ${hostId}`);
    return host.dev;
  };
  /** Creates `n` sandboxes of `key`'s team, one after another (placement sees each before the next). */
  const createMany = async (key: string, n: number, into: { id: string; host_id: string }[]) => {
    for (let i = 0; i < n; i++) into.push(await fleet.createSandbox(key));
    return into;
  };

  beforeAll(async () => {
    fleet = await Fleet.start(backend.db!, {
      serverEnv: {
        WRENN_HEARTBEAT_SEC: '1',
        WRENN_HOST_STALE_SEC: String(STALE_SEC),
      },
      agentEnv: {
        WRENN_HEARTBEAT_SEC: '1',
        WRENN_HEARTBEAT_GRACE: '3',
        // Network hygiene: nothing a test sandbox runs resolves names.
        WRENN_SANDBOX_NAMESERVERS: '',
      },
    });
    replicaA = await fleet.addReplica('a');
    replicaB = await fleet.addReplica('b');
    fleet.front.route([replicaA.url, replicaB.url]);
    for (const name of PLATFORM_HOSTS) platform.push(await fleet.addHost(name));
    team = await fleet.signup(`fleet-platform-${Date.now()}@example.com`);
  });

  afterAll(async () => {
    await fleet?.close();
  });

  it("spreads a team's sandboxes over the hosts; exec and the proxy reach each through the control plane", async () => {
    const created: { id: string; host_id: string }[] = [];
    try {
      await createMany(team.key, 3, created);
      expect(new Set(created.map((s) => s.host_id)).size).toBeGreaterThan(1);
      for (const s of created) {
        // The host the control plane placed it on is the agent that holds it.
        expect(platform.map((h) => h.id)).toContain(s.host_id);
        const agent = await fleet.agent(s.host_id, devOf(s.host_id).address);
        expect((await agent.listSandboxes({})).sandboxes.map((x) => x.id)).toContain(s.id);

        const hello = await fleet.exec(team.key, s.id, `echo hello from ${s.id}`);
        expect(hello.body).toMatchObject({ exit_code: 0, stdout: `hello from ${s.id}\n` });
        // A server in the sandbox, through either replica's proxy (a tunnel through its agent).
        const serve = await fleet.exec(
          team.key,
          s.id,
          `mkdir -p /tmp/www && echo ${s.id} > /tmp/www/who && cd /tmp/www && (setsid python3 -m http.server 8000 >/dev/null 2>&1 </dev/null &)`,
        );
        expect(serve.body).toMatchObject({ exit_code: 0 });
        for (const replica of [replicaA, replicaB]) {
          const page = await waitFor(`the proxy of ${replica.name} to reach ${s.id}:8000`, async () => {
            const res = await fetch(`${replica.url}/who`, {
              headers: { 'e2b-sandbox-id': s.id, 'e2b-sandbox-port': '8000' },
            });
            return res.status === 200 ? await res.text() : undefined;
          });
          expect(page).toBe(`${s.id}\n`);
        }
      }
    } finally {
      await fleet.destroy(
        team.key,
        created.map((s) => s.id),
      );
    }
  });

  it('kill -9 of an agent: its host goes unreachable and its sandboxes missing; restarted, it is online and they are reconciled', async () => {
    const { key } = team;
    const created: { id: string; host_id: string }[] = [];
    try {
      // Four sandboxes on three hosts: one host holds two.
      await createMany(key, 4, created);
      const host = platform.find((h) => created.filter((s) => s.host_id === h.id).length >= 2)!;
      const [running, paused] = created.filter((s) => s.host_id === host.id);
      if (!running || !paused) throw new Error('no host holds two of four sandboxes');
      const elsewhere = created.find((s) => s.host_id !== host.id)!;
      await fleet.exec(key, paused.id, 'echo kept > /home/user/kept');
      expect((await fleet.call('POST', `/v1/sandboxes/${paused.id}/pause`, { key })).status).toBe(200);

      await host.dev.kill();
      await fleet.waitHost(host.id, 'unreachable');
      await fleet.waitSandbox(key, running.id, 'missing');
      await fleet.waitSandbox(key, paused.id, 'missing');
      // The other hosts carry on.
      expect((await fleet.sandbox(key, elsewhere.id)).status).toBe('running');
      expect((await fleet.exec(key, elsewhere.id, 'echo up')).body).toMatchObject({ stdout: 'up\n' });
      // While its host is down, a sandbox there cannot be destroyed (its agent is not reached): 503,
      // and it stays missing; new sandboxes go to the hosts that are up.
      const refused = await fleet.call('DELETE', `/v1/sandboxes/${paused.id}`, { key });
      expect(refused.status).toBe(503);
      expect((await fleet.sandbox(key, paused.id)).status).toBe('missing');
      const another = await fleet.createSandbox(key);
      created.push(another);
      expect(another.host_id).not.toBe(host.id);

      // Back without a token: online, the paused sandbox paused again; the running one outlived its
      // agent (the restarted agent adopts it where it runs), so it is running again.
      await fleet.restartHost(host.dev);
      await fleet.waitHost(host.id, 'online', 60_000);
      await fleet.waitSandbox(key, paused.id, 'paused');
      await fleet.waitSandbox(key, running.id, 'running');
      const agent = await fleet.agent(host.id, host.dev.address);
      const held = (await agent.listSandboxes({})).sandboxes.map((s) => s.id);
      expect(held).toContain(paused.id);
      expect(held).toContain(running.id);
      expect((await fleet.exec(key, running.id, 'echo adopted')).body).toMatchObject({ stdout: 'adopted\n' });
      // It resumes where it was, and now it can be destroyed, on its agent too.
      expect((await fleet.call('POST', `/v1/sandboxes/${paused.id}/resume`, { key })).status).toBe(200);
      expect((await fleet.exec(key, paused.id, 'cat /home/user/kept')).body).toMatchObject({
        stdout: 'kept\n',
      });
      expect((await fleet.call('DELETE', `/v1/sandboxes/${paused.id}`, { key })).status).toBe(204);
      expect((await agent.listSandboxes({})).sandboxes.map((s) => s.id)).not.toContain(paused.id);
      expect(await host.dev.sandboxDirs()).not.toContain(paused.id);
    } finally {
      await fleet.destroy(
        key,
        created.map((s) => s.id),
      );
    }
  });

  it('partition: the agent pauses its sandboxes on its own (PauseAll) and the host goes unreachable; healed, the control plane resumes them with their processes', async () => {
    const { key } = team;
    const created: { id: string; host_id: string }[] = [];
    try {
      await createMany(key, 3, created);
      const s = created[0]!;
      const dev = devOf(s.host_id);
      const others = created.filter((x) => x.host_id !== s.host_id);
      await fleet.exec(key, s.id, 'echo kept > /home/user/kept');
      const started = await fleet.exec(
        key,
        s.id,
        '(setsid sleep 100000 >/dev/null 2>&1 </dev/null & echo $!)',
      );
      const pid = String(started.body.stdout).trim();
      expect(pid).toMatch(/^\d+$/);
      const logBefore = (await dev.log()).length;

      await dev.partition();
      try {
        await fleet.waitHost(s.host_id, 'unreachable');
        await fleet.waitSandbox(key, s.id, 'missing');
        // Nobody could tell it to: the agent paused the sandbox itself (logged per sandbox).
        const pauseAll = await waitFor('PauseAll in the agent log', async () => {
          const lines = (await dev.log()).slice(logBefore).split('\n');
          return lines.find((l) => l.includes('PauseAll') && l.includes(s.id));
        });
        expect(pauseAll).toContain('the control plane is out of reach');
      } finally {
        await dev.heal();
      }
      await fleet.waitHost(s.host_id, 'online', 60_000);
      // Reconciled from its heartbeat, and resumed by the control plane: PauseAll paused it, not anyone.
      await fleet.waitSandbox(key, s.id, 'running');
      await waitFor('the control plane to say it resumed the sandbox', () =>
        fleet.replicas.some((r) =>
          r
            .logs()
            .split('\n')
            .some((l) => l.includes('resumed what PauseAll paused') && l.includes(s.id)),
        )
          ? true
          : undefined,
      );
      const agent = await fleet.agent(s.host_id, dev.address);
      expect((await agent.getSandbox({ sandboxId: s.id })).sandbox?.status).toBe(
        hostagent.SandboxStatus.RUNNING,
      );
      // Paused and resumed, not restarted: its files and its processes are where they were.
      expect((await fleet.exec(key, s.id, `cat /home/user/kept; ps -o comm= -p ${pid}`)).body).toMatchObject({
        exit_code: 0,
        stdout: 'kept\nsleep\n',
      });
      // Only the cut-off host paused its sandboxes.
      for (const o of others) expect((await fleet.sandbox(key, o.id)).status).toBe('running');
    } finally {
      await fleet.destroy(
        key,
        created.map((s) => s.id),
      );
    }
  });

  it("BYOC: a team's sandboxes go only to its own host, other teams' never do; it sees only its hosts; its host down → 503 naming why", async () => {
    const b = await fleet.signup(`fleet-byoc-${Date.now()}@example.com`);
    const made = await fleet.call('PUT', `/v1/admin/teams/${b.teamId}/byoc`, {
      bearer: fleet.adminToken,
      body: { is_byoc: true },
    });
    expect(made.body).toMatchObject({ id: b.teamId, is_byoc: true });
    const host = await fleet.addHost(BYOC_HOST, b.token);
    byoc = { team: b, host };
    const ours: { id: string; host_id: string }[] = [];
    const theirs: { id: string; host_id: string }[] = [];
    try {
      await createMany(b.key, 2, ours);
      await createMany(team.key, 3, theirs);
      expect(ours.map((s) => s.host_id)).toEqual([host.id, host.id]);
      expect(theirs.map((s) => s.host_id)).not.toContain(host.id);
      expect((await fleet.exec(b.key, ours[0]!.id, 'echo mine')).body).toMatchObject({ stdout: 'mine\n' });
      const agent = await fleet.agent(host.id, host.dev.address);
      expect((await agent.listSandboxes({})).sandboxes.map((s) => s.id).sort()).toEqual(
        ours.map((s) => s.id).sort(),
      );

      // B sees its host and nothing else; the platform team's owner sees none of B's.
      const listed = await fleet.call('GET', '/v1/hosts', { bearer: b.token });
      expect((listed.body.hosts as { id: string; kind: string }[]).map((h) => [h.id, h.kind])).toEqual([
        [host.id, 'byoc'],
      ]);
      const asked = await fleet.call('GET', `/v1/hosts?team_id=${team.teamId}`, { bearer: b.token });
      expect(asked.body).toEqual({ hosts: [] });
      expect((await fleet.call('GET', '/v1/hosts', { bearer: team.token })).body).toEqual({ hosts: [] });
      expect((await fleet.call('GET', '/v1/admin/hosts', { bearer: b.token })).status).toBe(403);

      // Its only host down: B's create is refused, saying why; the platform team's still works.
      await fleet.destroy(
        b.key,
        ours.map((s) => s.id),
      );
      await host.dev.kill();
      await fleet.waitHost(host.id, 'unreachable');
      const refused = await fleet.call('POST', '/v1/sandboxes', { key: b.key, body: {} });
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ code: 'unavailable' });
      expect(refused.body.message).toContain("none of the team's own hosts is online");
      theirs.push(await fleet.createSandbox(team.key));
      await fleet.restartHost(host.dev);
      await fleet.waitHost(host.id, 'online', 60_000);
    } finally {
      await fleet.destroy(
        b.key,
        ours.map((s) => s.id),
      );
      await fleet.destroy(
        team.key,
        theirs.map((s) => s.id),
      );
    }
  });

  it('DELETE /v1/hosts/{id}: 409 listing its sandboxes; ?force=true destroys them on its agent and the host is gone', async () => {
    if (!byoc) throw new Error("the BYOC test's host is needed (it failed)");
    const { team: b, host } = byoc;
    const created: { id: string; host_id: string }[] = [];
    try {
      await createMany(b.key, 2, created);
      const ids = created.map((s) => s.id).sort();
      const agent = await fleet.agent(host.id, host.dev.address);
      expect((await agent.listSandboxes({})).sandboxes.map((s) => s.id).sort()).toEqual(ids);
      expect((await host.dev.runscProcesses()).length).toBeGreaterThan(0);

      const refused = await fleet.call('DELETE', `/v1/hosts/${host.id}`, { bearer: b.token });
      expect(refused.status).toBe(409);
      expect(refused.body).toMatchObject({ code: 'failed_precondition', sandboxes: ids });
      const forced = await fleet.call('DELETE', `/v1/hosts/${host.id}?force=true`, { bearer: b.token });
      expect(forced.status).toBe(204);

      // On the agent: nothing left, neither in its list nor as runsc processes or files.
      expect((await agent.listSandboxes({})).sandboxes).toEqual([]);
      await waitFor('no runsc process of the deleted host', async () =>
        (await host.dev.runscProcesses()).length === 0 ? true : undefined,
      );
      expect(await host.dev.sandboxDirs()).toEqual([]);
      // In the API: the sandboxes stopped, the host gone (only listed as deleted).
      for (const id of ids) expect((await fleet.sandbox(b.key, id)).status).toBe('stopped');
      expect((await fleet.call('GET', '/v1/hosts', { bearer: b.token })).body).toEqual({ hosts: [] });
      expect((await fleet.hosts()).map((h) => h.id)).not.toContain(host.id);
      const all = await fleet.call('GET', '/v1/admin/hosts?deleted=true', { bearer: fleet.adminToken });
      expect((all.body.hosts as { id: string; status: string }[]).find((h) => h.id === host.id)?.status).toBe(
        'deleted',
      );
      // Its agent's credentials stop working.
      await waitFor('the deleted host refused', async () =>
        (await host.dev.log()).includes('heartbeat refused and refresh refused') ? true : undefined,
      );
    } finally {
      await fleet.destroy(
        b.key,
        created.map((s) => s.id),
      );
      await host.dev.remove();
    }
  });

  it('leader handover: the leading replica killed with SIGKILL, the other takes over (its monitor marks a killed host unreachable) and serves the API', async () => {
    const leads = (r: ServerReplica) => {
      const log = r.logs();
      return log.lastIndexOf('this server leads') > log.lastIndexOf('this server no longer leads');
    };
    const lockHeld = async () =>
      (
        await fleet.sql.query(
          `select 1 from pg_locks where locktype = 'advisory' and objid = $1 and granted`,
          [0x77726e6e],
        )
      ).rowCount === 1;
    const leader = await waitFor('one leader', () => {
      const leading = [replicaA, replicaB].filter(leads);
      return leading.length === 1 ? leading[0] : undefined;
    });
    expect(await lockHeld()).toBe(true);
    const survivor = leader === replicaA ? replicaB : replicaA;

    await leader.kill();
    await waitFor(`${survivor.name} to lead`, () => (leads(survivor) ? true : undefined));
    expect(await lockHeld()).toBe(true);

    // Its monitor marks a host whose agent was killed; the others, heartbeating through the front to
    // the survivor, stay online.
    const [down, ...up] = platform;
    await down!.dev.kill();
    await fleet.waitHost(down!.id, 'unreachable');
    await new Promise((r) => setTimeout(r, STALE_SEC * 1000));
    const hosts = await fleet.call('GET', '/v1/admin/hosts', { bearer: fleet.adminToken, via: survivor.url });
    for (const h of up)
      expect((hosts.body.hosts as { id: string; status: string }[]).find((x) => x.id === h.id)?.status).toBe(
        'online',
      );

    // The API keeps working on the survivor: a sandbox made, used and destroyed.
    const created = await fleet.call('POST', '/v1/sandboxes', { key: team.key, body: {}, via: survivor.url });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    try {
      expect(created.body.host_id).not.toBe(down!.id);
      expect((await fleet.exec(team.key, id, 'echo still here', survivor.url)).body).toMatchObject({
        stdout: 'still here\n',
      });
    } finally {
      expect(
        (await fleet.call('DELETE', `/v1/sandboxes/${id}`, { key: team.key, via: survivor.url })).status,
      ).toBe(204);
    }
    await fleet.restartHost(down!.dev);
    await fleet.waitHost(down!.id, 'online', 60_000);
  });

  it('a replica killed between issuing a new refresh token and revoking the old one: the agent refreshes again through another replica', async () => {
    const survivor = [replicaA, replicaB].find(
      (r) => r.child.exitCode === null && r.child.signalCode === null,
    )!;
    const faulty = await fleet.addReplica('fault', { WRENN_TEST_FAULT: 'exit-after-refresh-issue' });
    fleet.front.route([faulty.url, survivor.url]);
    const host = platform[2]!;
    const tokensFile = path.join(host.dev.dir, 'credentials', 'tokens.json');
    const hash = (token: string) => createHash('sha256').update(token).digest('hex');
    const tokenStatus = async (token: string) =>
      (
        await fleet.sql.query<{ status: string }>(
          'select status from host_refresh_tokens where token_hash = $1',
          [hash(token)],
        )
      ).rows[0]?.status;

    // The agent comes back after its host JWT expired (signed by the cluster's key, a day ago):
    // its first heartbeat pass refreshes, and the front hands that to the faulty replica.
    await host.dev.kill();
    const before = JSON.parse(await readFile(tokensFile, 'utf8')) as {
      access_token: string;
      refresh_token: string;
    };
    expect(await tokenStatus(before.refresh_token)).toBe('active');
    await writeFile(
      tokensFile,
      JSON.stringify({ ...before, access_token: await expiredHostJwt(fleet, host.id) }),
    );
    const logBefore = (await host.dev.log()).length;
    await fleet.restartHost(host.dev);

    expect(await faulty.exited).toBe('SIGKILL');
    expect(faulty.logs()).toContain('WRENN_TEST_FAULT=exit-after-refresh-issue');
    const after = await waitFor('the agent to store refreshed tokens', async () => {
      const now = JSON.parse(await readFile(tokensFile, 'utf8')) as { refresh_token: string };
      return now.refresh_token !== before.refresh_token ? now : undefined;
    });
    // The old token was still valid after the crash (issued, never revoked): the survivor rotated it.
    expect(await tokenStatus(before.refresh_token)).toBe('rotated');
    expect(await tokenStatus(after.refresh_token)).toBe('active');
    const family = await fleet.sql.query<{ status: string }>(
      `select status from host_refresh_tokens where family = (select family from host_refresh_tokens where token_hash = $1) order by created_at`,
      [hash(before.refresh_token)],
    );
    // rotated (the agent's old one), active (issued by the killed replica, never handed out), active (the new one)
    expect(family.rows.map((r) => r.status).sort()).toEqual(['active', 'active', 'rotated']);
    // The agent stores the new tokens before it says so in its log.
    const log = await waitFor('the agent to log the refresh', async () => {
      const text = (await host.dev.log()).slice(logBefore);
      return text.includes('host credentials refreshed') ? text : undefined;
    });
    expect(log).not.toContain('refresh refused');
    await fleet.waitHost(host.id, 'online', 60_000);
    // Its heartbeats go on with the new token.
    const { rows } = await fleet.sql.query<{ at: Date }>(
      'select last_heartbeat_at as at from hosts where id = $1',
      [host.id],
    );
    await waitFor('a later heartbeat', async () => {
      const again = await fleet.sql.query<{ at: Date }>(
        'select last_heartbeat_at as at from hosts where id = $1',
        [host.id],
      );
      return again.rows[0]!.at > rows[0]!.at ? true : undefined;
    });
    fleet.front.route([survivor.url]);
  });
});

/** A host JWT like the control plane's, signed with the cluster's key, that expired a day ago. */
async function expiredHostJwt(fleet: Fleet, hostId: string): Promise<string> {
  const { rows } = await fleet.sql.query<{ value: { privateKeyPem: string } }>(
    `select value from cluster_keys where name = 'host_token_key'`,
  );
  const key = await importPKCS8(rows[0]!.value.privateKeyPem, 'ES256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256' })
    .setSubject(hostId)
    .setIssuer('wrenn')
    .setAudience('wrenn-host')
    .setIssuedAt(now - 8 * 86_400)
    .setExpirationTime(now - 86_400)
    .sign(key);
}
