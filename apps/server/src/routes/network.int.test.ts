import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';
import { insertSandboxRow } from '../testing/rows.js';

const backends = await testBackends();

// Network settings through both front doors: validation (a bad entry is a 400 naming it), what a
// paused sandbox's row keeps (resume sends it to the agent), and what the APIs show back. The
// enforcement itself is test/e2e/egress.e2e.test.ts and e2b-network.e2e.test.ts.
describeOnBackends('sandbox network settings', backends, (backend) => {
  const api = useTestServer(backend);

  it('refuses bad entries on /v1 with the entry named', async () => {
    const { key } = await api.user('net-v1@example.com');
    const cases: [unknown, string][] = [
      [{ network: { allow_out: ['1.1.1.1', 'example.com', 'not a host'] } }, 'network.allow_out[2]: '],
      [{ network: { deny_out: ['example.com'] } }, 'network.deny_out[0]: '],
      [{ network: { deny_out: ['10.0.0.0/33'] } }, 'network.deny_out[0]: '],
      [{ network: { deny_out: ['fd00::/8'] } }, 'network.deny_out[0]: '],
      [{ network: { allow_out: ['*'] } }, 'network.allow_out[0]: '],
      [{ network: { allow_internet: 'no' } }, 'network.allow_internet: '],
      [{ network: { deny_out: Array(257).fill('1.1.1.1') } }, 'network.deny_out: '],
      [{ network: { spam: true } }, 'network: '],
    ];
    for (const [body, message] of cases) {
      const res = await api.call('POST', '/v1/sandboxes', { headers: key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe('invalid_argument');
      expect(res.body.message as string, JSON.stringify(body)).toMatch(new RegExp(`^${escape(message)}`));
    }
  });

  it('PUT and PATCH /v1/sandboxes/{id}/network keep a paused sandbox’s policy for its resume', async () => {
    const { key, team } = await api.user('net-put@example.com');
    await insertSandboxRow(api.db, { id: 'netpaused01', team_id: team.id, status: 'paused' });
    const put = await api.call('PUT', '/v1/sandboxes/netpaused01/network', {
      headers: key,
      body: {
        allow_out: ['api.example.com', '1.2.3.4'],
        deny_out: ['0.0.0.0/0'],
        allow_public_traffic: false,
      },
    });
    expect(put.status).toBe(200);
    expect(put.body.network).toEqual({
      allow_internet: null,
      allow_out: ['api.example.com', '1.2.3.4'],
      deny_out: ['0.0.0.0/0'],
      allow_public_traffic: false,
    });
    expect(put.body.traffic_access_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // PATCH changes what it names only.
    const patch = await api.call('PATCH', '/v1/sandboxes/netpaused01/network', {
      headers: key,
      body: { allow_internet: true },
    });
    expect(patch.body.network).toMatchObject({ allow_internet: true, deny_out: ['0.0.0.0/0'] });
    // PUT replaces the lists (left out: cleared).
    const cleared = await api.call('PUT', '/v1/sandboxes/netpaused01/network', { headers: key, body: {} });
    expect(cleared.body.network).toEqual({
      allow_internet: null,
      allow_out: [],
      deny_out: [],
      allow_public_traffic: false,
    });
    const bad = await api.call('PUT', '/v1/sandboxes/netpaused01/network', {
      headers: key,
      body: { allow_out: ['ok.example.com', '300.1.1.1/8'] },
    });
    expect(bad).toMatchObject({ status: 400, body: { code: 'invalid_argument' } });
    expect(bad.body.message).toMatch(/^allow_out\[1\]: /);
    // Another team's sandbox is not found.
    const other = await api.user('net-other@example.com');
    const foreign = await api.call('PUT', '/v1/sandboxes/netpaused01/network', {
      headers: other.key,
      body: {},
    });
    expect(foreign.status).toBe(404);
  });

  it('refuses bad entries and what Wrenn does not do on E2B’s routes, in E2B’s error shape', async () => {
    const { key, team } = await api.user('net-e2b@example.com');
    await insertSandboxRow(api.db, { id: 'netpaused02', team_id: team.id, status: 'paused' });
    const cases: [string, string, unknown, RegExp][] = [
      ['POST', '/v2/sandboxes', { network: { allowOut: ['a b'] } }, /^network\.allowOut\[0\]: /],
      ['POST', '/v2/sandboxes', { network: { denyOut: ['1.1.1.1', 'x.com'] } }, /^network\.denyOut\[1\]: /],
      ['POST', '/v2/sandboxes', { allow_internet_access: 'no' }, /^allow_internet_access: /],
      [
        'POST',
        '/v2/sandboxes',
        { network: { egressProxy: { address: 'p:1080' } } },
        /^network\.egressProxy: /,
      ],
      ['POST', '/v2/sandboxes', { network: { rules: { 'a.com': [{}] } } }, /not supported by Wrenn/],
      ['PUT', '/sandboxes/netpaused02/network', { denyOut: ['0.0.0.0/0', 'bad'] }, /^denyOut\[1\]: /],
    ];
    for (const [method, path, body, message] of cases) {
      const res = await api.call(method, path, { headers: key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe(400);
      expect(res.body.message as string, JSON.stringify(body)).toMatch(message);
    }
    const put = await api.call('PUT', '/sandboxes/netpaused02/network', {
      headers: key,
      body: { allowOut: ['1.1.1.1'], allow_internet_access: false },
    });
    expect(put.status).toBe(204);
    const got = await api.call('GET', '/sandboxes/netpaused02', { headers: key });
    expect(got.body).toMatchObject({
      allowInternetAccess: false,
      network: { allowOut: ['1.1.1.1'], denyOut: [], allowPublicTraffic: true },
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
