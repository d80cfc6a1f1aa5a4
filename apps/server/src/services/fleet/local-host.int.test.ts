import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { generateKeyPair } from '@wrenn/pki';
import { describeOnBackends, testBackends, testLogger, useTestServer } from '../../testing/api.js';
import { insertSandboxRow } from '../../testing/rows.js';
import { abandonLocalHost, prepareLocalHost } from './local-host.js';

const backends = await testBackends();

describeOnBackends("`wrenn up`'s own host", backends, (backend) => {
  // The server starts with a static host, as an install from before `wrenn up` registered its agent.
  const api = useTestServer(backend);
  const deps = () => ({ db: api.db, fleet: api.fleet, logger: testLogger });
  const hostRow = (id: string) =>
    api.db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  async function register(token: string, address: string) {
    const keys = await generateKeyPair();
    return api.call('POST', '/v1/hosts/register', {
      body: {
        registration_token: token,
        arch: 'x86_64',
        cpu_cores: 2,
        memory_mb: 4096,
        disk_mb: 100_000,
        address,
        public_key: keys.publicKeyPem,
        agent_version: 'test',
      },
    });
  }

  it('takes over the static host (its id and sandboxes), then needs no token; its slots are reached directly', async () => {
    const staticId = api.fleet.directory.staticHostId!;
    const { team } = await api.signup('up-owner@example.com');
    await insertSandboxRow(api.db, {
      id: 'upkept001',
      team_id: team.id,
      status: 'paused',
      host_id: staticId,
    });
    await insertSandboxRow(api.db, { id: 'upolder01', team_id: team.id, status: 'paused', host_id: null });

    const plan = await prepareLocalHost(deps(), { address: '127.0.0.1:7443' });
    expect(plan).toMatchObject({ hostId: staticId, staleCredentials: false });
    // Until its agent registers, it is still the static host (an agent that fails to start changes nothing).
    expect(await hostRow(staticId)).toMatchObject({ is_static: true });
    const registered = await register(plan.registrationToken!, '127.0.0.1:7443');
    expect(registered).toMatchObject({ status: 200, body: { host_id: staticId } });
    expect(await hostRow(staticId)).toMatchObject({
      is_static: false,
      status: 'online',
      kind: 'platform',
      address: '127.0.0.1:7443',
    });
    const rows = await api.db.selectFrom('sandboxes').select(['id', 'host_id']).orderBy('id').execute();
    expect(rows).toEqual([
      { id: 'upkept001', host_id: staticId },
      { id: 'upolder01', host_id: staticId },
    ]);
    expect((await api.fleet.directory.route(staticId)).kind).toBe('direct');

    // The next start: its credentials name it; the port moved.
    const again = await prepareLocalHost(deps(), { registeredHostId: staticId, address: '127.0.0.1:7444' });
    expect(again).toEqual({ hostId: staticId, staleCredentials: false });
    expect(await hostRow(staticId)).toMatchObject({ address: '127.0.0.1:7444', status: 'online' });
  });

  it('registers anew when the credentials name a host it does not have; an agent that never started leaves no host', async () => {
    const plan = await prepareLocalHost(deps(), {
      registeredHostId: randomUUID(),
      address: '127.0.0.1:7445',
    });
    expect(plan.staleCredentials).toBe(true);
    expect(plan.registrationToken).toBeDefined();
    expect(await hostRow(plan.hostId)).toMatchObject({
      kind: 'platform',
      status: 'pending',
      is_static: false,
    });
    expect(api.fleet.directory.localHostId).toBe(plan.hostId);

    await abandonLocalHost(deps(), plan.hostId);
    expect(await hostRow(plan.hostId)).toMatchObject({ status: 'deleted' });
    expect(api.fleet.directory.localHostId).toBeUndefined();
    expect((await register(plan.registrationToken!, '127.0.0.1:7445')).status).toBe(401);
  });

  it('abandoning a host that registered keeps it (its agent has credentials for the next start)', async () => {
    const plan = await prepareLocalHost(deps(), { address: '127.0.0.1:7446' });
    expect((await register(plan.registrationToken!, '127.0.0.1:7446')).status).toBe(200);
    await abandonLocalHost(deps(), plan.hostId);
    expect(await hostRow(plan.hostId)).toMatchObject({ status: 'online' });
  });
});
