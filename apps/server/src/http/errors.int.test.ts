import { expect, it } from 'vitest';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';

const backends = await testBackends();

describeOnBackends('errors of the database', backends, (backend) => {
  const api = useTestServer(backend);

  // Found by fuzz.int.test.ts: a NUL byte reached a query and came back as a 500.
  it('answers a NUL byte in a value that reaches the database with 400, not 500', async () => {
    const { key } = await api.user('nul@example.com');
    for (const path of ['/snapshots?sandboxID=%00', '/templates/aliases/a%00b', '/templates/%00/tags']) {
      const res = await api.call('GET', path, { headers: key });
      expect(res, path).toEqual({
        status: 400,
        body: { code: 400, message: 'a value holds a NUL byte, which text cannot' },
      });
    }
  });
});
