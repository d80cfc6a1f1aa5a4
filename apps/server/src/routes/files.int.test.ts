import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';
import { insertSandboxRow } from '../testing/rows.js';

const backends = await testBackends();

// GET /v1/sandboxes/{id}/dir up to the agent: what the control plane refuses by itself (bad input,
// someone else's or a paused sandbox). The listing itself, a missing path and a file are the real
// agent's answers: test/e2e/files.e2e.test.ts.
describeOnBackends('directory listing', backends, (backend) => {
  const api = useTestServer(backend);

  it('refuses bad input with the field named', async () => {
    const { key, team } = await api.user('dir-input@example.com');
    await insertSandboxRow(api.db, { id: 'dirinput01', team_id: team.id, status: 'running' });
    const cases: [string, string][] = [
      ['', 'path: '],
      ['depth=1', 'path: '],
      ['path=home/user', 'path: must be absolute (start with /)'],
      ['path=', 'path: '],
      ['path=/home/user&depth=0', 'depth: '],
      ['path=/home/user&depth=11', 'depth: '],
      ['path=/home/user&depth=two', 'depth: '],
      ['path=/home/user&user=Not%20A%20User', 'user: '],
      ['path=/home%00/user', 'path: '],
    ];
    for (const [query, message] of cases) {
      const res = await api.call('GET', `/v1/sandboxes/dirinput01/dir?${query}`, { headers: key });
      expect(res.status, query).toBe(400);
      expect(res.body.code, query).toBe('invalid_argument');
      expect(res.body.message as string, query).toMatch(new RegExp(`^${message.replace(/[()]/g, '\\$&')}`));
    }
  });

  it('another team’s or an unknown sandbox is a 404; a paused one a 409', async () => {
    const { key, team } = await api.user('dir-owner@example.com');
    const other = await api.user('dir-other@example.com');
    await insertSandboxRow(api.db, { id: 'dirpaused01', team_id: team.id, status: 'paused' });
    const paused = await api.call('GET', '/v1/sandboxes/dirpaused01/dir?path=/home/user', { headers: key });
    expect(paused.status).toBe(409);
    expect(paused.body).toEqual({
      code: 'failed_precondition',
      message: 'sandbox "dirpaused01" is paused, not running',
    });
    const notTheirs = await api.call('GET', '/v1/sandboxes/dirpaused01/dir?path=/', { headers: other.key });
    expect(notTheirs.status).toBe(404);
    const unknown = await api.call('GET', '/v1/sandboxes/dirnone0001/dir?path=/', { headers: key });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('not_found');
  });
});
