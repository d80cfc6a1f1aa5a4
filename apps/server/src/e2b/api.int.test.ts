import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';
import { insertSandboxRow } from '../testing/rows.js';

const backends = await testBackends();

// The E2B API's contract that needs no sandbox: its error shape (the JS SDK reads `code` from the
// body), validation, team scoping and listing. The flows with sandboxes are in test/e2e/e2b-sdk.
describeOnBackends('the E2B-compatible API', backends, (backend) => {
  const api = useTestServer(backend);

  async function teamKey(email: string) {
    const session = await api.signup(email);
    const res = await api.call('POST', `/v1/teams/${session.team.id}/api-keys`, {
      body: { name: 'e2b' },
      headers: { authorization: `Bearer ${session.token}` },
    });
    return { key: res.body.key as string, teamId: session.team.id };
  }

  const sandboxRow = (id: string, team_id: string, status: 'running' | 'paused', metadata = {}) =>
    insertSandboxRow(api.db, { id, team_id, status, metadata });

  it('answers errors as {code: <status>, message}', async () => {
    const { key } = await teamKey('e2b-errors@example.com');
    const cases: [string, string, Record<string, string>, unknown, number][] = [
      ['GET', '/v2/sandboxes', {}, undefined, 401],
      ['GET', '/sandboxes/abcdefgh12', { 'x-api-key': 'wrn_forged' }, undefined, 401],
      ['GET', '/sandboxes/NOT_AN_ID', { 'x-api-key': key }, undefined, 400],
      ['GET', '/sandboxes/abcdefgh12', { 'x-api-key': key }, undefined, 404],
      ['DELETE', '/sandboxes/abcdefgh12', { 'x-api-key': key }, undefined, 404],
      ['POST', '/sandboxes/abcdefgh12/timeout', { 'x-api-key': key }, { timeout: 10 }, 404],
      ['POST', '/v2/sandboxes', { 'x-api-key': key }, { templateID: '../etc' }, 400],
      ['POST', '/v2/sandboxes', { 'x-api-key': key }, { timeout: 'soon' }, 400],
      ['GET', '/v2/sandboxes?state=sleeping', { 'x-api-key': key }, undefined, 400],
      ['GET', '/v2/sandboxes?nextToken=garbage', { 'x-api-key': key }, undefined, 400],
      ['GET', '/v2/sandboxes?limit=1000', { 'x-api-key': key }, undefined, 400],
      ['DELETE', '/templates/not-a-uuid', { 'x-api-key': key }, undefined, 404],
    ];
    for (const [method, path, headers, body, status] of cases) {
      const res = await api.call(method, path, { headers, body });
      expect(res.status, `${method} ${path}`).toBe(status);
      expect(Object.keys(res.body).sort(), `${method} ${path}`).toEqual(['code', 'message']);
      expect(res.body.code, `${method} ${path}`).toBe(status);
      expect(typeof res.body.message).toBe('string');
    }
    const malformed = await api.call('POST', '/v2/sandboxes', {
      headers: { 'x-api-key': key },
      raw: '{"templateID":',
    });
    expect(malformed.body).toEqual({ code: 400, message: 'body: malformed JSON' });
  });

  it("lists only the team's sandboxes, by state and (twice-encoded) metadata, page by page", async () => {
    const a = await teamKey('e2b-list-a@example.com');
    const b = await teamKey('e2b-list-b@example.com');
    await sandboxRow('listrun0001', a.teamId, 'running', { app: 'b c' });
    await sandboxRow('listrun0002', a.teamId, 'running', { app: 'other' });
    await sandboxRow('listpaus001', a.teamId, 'paused', { app: 'b c' });
    await sandboxRow('listothr001', b.teamId, 'running', { app: 'b c' });
    const list = async (query: string, key = a.key) => {
      const res = await api.send('GET', `/v2/sandboxes${query}`, { headers: { 'x-api-key': key } });
      const body = (await res.json()) as { sandboxID: string; state: string }[];
      return { ids: body.map((s) => s.sandboxID).sort(), body, next: res.headers.get('x-next-token') };
    };
    expect((await list('')).ids).toEqual(['listpaus001', 'listrun0001', 'listrun0002']);
    // Naming no state (found by the fuzz: it was an SQL error) lists what no `state` lists.
    expect((await list('?state=')).ids).toEqual(['listpaus001', 'listrun0001', 'listrun0002']);
    expect((await list('?state=,')).ids).toEqual(['listpaus001', 'listrun0001', 'listrun0002']);
    expect((await list('?state=paused')).body).toEqual([
      expect.objectContaining({
        sandboxID: 'listpaus001',
        state: 'paused',
        clientID: '6532622b',
        cpuCount: 1,
      }),
    ]);
    // What the JS SDK sends for { app: 'b c' }.
    expect((await list('?metadata=app%3Db%252520c')).ids).toEqual(['listpaus001', 'listrun0001']);
    expect((await list('?metadata=app%3Db%252520c&state=running')).ids).toEqual(['listrun0001']);
    expect((await list('', b.key)).ids).toEqual(['listothr001']);

    const first = await list('?limit=2');
    expect(first.ids).toHaveLength(2);
    expect(first.next).toBeTruthy();
    const second = await list(`?limit=2&nextToken=${first.next}`);
    expect(second.next).toBeNull();
    expect([...first.ids, ...second.ids].sort()).toEqual(['listpaus001', 'listrun0001', 'listrun0002']);

    // Another team's sandbox is not found for every route.
    for (const [method, path] of [
      ['GET', '/sandboxes/listothr001'],
      ['DELETE', '/sandboxes/listothr001'],
      ['POST', '/sandboxes/listothr001/pause'],
      ['POST', '/v2/sandboxes/listothr001/connect'],
      ['GET', '/sandboxes/listothr001/metrics'],
    ] as const) {
      const res = await api.call(method, path, { headers: { 'x-api-key': a.key } });
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    // A paused sandbox cannot have its timeout set, nor be paused again.
    const paused = { headers: { 'x-api-key': a.key } };
    expect(
      (await api.call('POST', '/sandboxes/listpaus001/timeout', { ...paused, body: { timeout: 5 } })).status,
    ).toBe(404);
    expect((await api.call('POST', '/sandboxes/listpaus001/pause', paused)).status).toBe(409);
  });
});
