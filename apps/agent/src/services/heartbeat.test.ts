import { silentLogger } from '@wrenn/core';
import { describe, expect, it } from 'vitest';
import { ControlPlaneRefusal, type HeartbeatRequest } from '../fleet/control-plane-client.js';
import { Supervision } from '../fleet/pause-all.js';
import { heartbeatPass, type HeartbeatDeps } from './heartbeat.js';

const REPORT: HeartbeatRequest = {
  capacity: { cpu_cores: 2, memory_mb: 4096, disk_mb: 10_000 },
  load: { cpu_pct: 5, memory_used_mb: 100, disk_used_mb: 10 },
  sandboxes: [],
};

/** A control plane that answers as `answers` say, one per call, and a host with sandboxes. */
function fakes(
  answers: ('ok' | 'refused' | 'down')[],
  opts: { refreshRefused?: boolean; due?: boolean } = {},
) {
  const calls: string[] = [];
  let token = 't1';
  const statuses = new Map([
    ['a', 'running'],
    ['b', 'running'],
    ['c', 'paused'],
  ]);
  const deps: HeartbeatDeps = {
    session: {
      get accessToken() {
        return token;
      },
      refreshDue: () => opts.due ?? false,
      refresh: () => {
        calls.push('refresh');
        if (opts.refreshRefused) return Promise.reject(new ControlPlaneRefusal(401, 'revoked'));
        token = `t${Number(token.slice(1)) + 1}`;
        return Promise.resolve();
      },
    },
    api: {
      heartbeat: (accessToken) => {
        calls.push(`heartbeat ${accessToken}`);
        const answer = answers.shift() ?? 'down';
        if (answer === 'refused') return Promise.reject(new ControlPlaneRefusal(401, 'expired'));
        if (answer === 'down') return Promise.reject(new Error('connect ECONNREFUSED'));
        return Promise.resolve({ heartbeat_interval_sec: 7 });
      },
    },
    report: () => Promise.resolve(REPORT),
    sandboxes: {
      list: () => [...statuses].map(([id, status]) => ({ id, status })),
      pause: (id) => {
        calls.push(`pause ${id}`);
        return Promise.resolve(statuses.set(id, 'paused'));
      },
    },
    supervision: new Supervision(2),
    logger: silentLogger(),
  };
  return { deps, calls, statuses };
}

describe('the heartbeat', () => {
  it('sends the report and hands back the interval the control plane asks for', async () => {
    const { deps, calls } = fakes(['ok']);
    expect(await heartbeatPass(deps)).toBe(7);
    expect(calls).toEqual(['heartbeat t1']);
  });

  it('refreshes first when the credentials are due', async () => {
    const { deps, calls } = fakes(['ok'], { due: true });
    await heartbeatPass(deps);
    expect(calls).toEqual(['refresh', 'heartbeat t2']);
  });

  it('on 401/403 refreshes and sends again with the new token', async () => {
    const { deps, calls } = fakes(['refused', 'ok']);
    expect(await heartbeatPass(deps)).toBe(7);
    expect(calls).toEqual(['heartbeat t1', 'refresh', 'heartbeat t2']);
    expect(deps.supervision.isLost).toBe(false);
  });

  it('pauses every running sandbox once heartbeats failed for the grace, and carries on when answered', async () => {
    const { deps, calls, statuses } = fakes(['down', 'down', 'ok']);
    await heartbeatPass(deps);
    expect(calls.filter((c) => c.startsWith('pause'))).toEqual([]);
    await heartbeatPass(deps);
    expect(calls.filter((c) => c.startsWith('pause')).sort()).toEqual(['pause a', 'pause b']);
    expect([...statuses.values()]).toEqual(['paused', 'paused', 'paused']);
    expect(await heartbeatPass(deps)).toBe(7);
    expect(deps.supervision.isLost).toBe(false);
  });

  it('does not count a heartbeat cut short by the agent stopping', async () => {
    const { deps, calls } = fakes(['down', 'down', 'down']);
    const stopping = new AbortController();
    stopping.abort();
    for (let i = 0; i < 3; i++) await heartbeatPass(deps, stopping.signal);
    expect(deps.supervision.isLost).toBe(false);
    expect(calls.filter((c) => c.startsWith('pause'))).toEqual([]);
  });

  it('counts a refused refresh as a failed heartbeat (PauseAll after the grace)', async () => {
    const { deps, calls } = fakes(['refused', 'refused'], { refreshRefused: true });
    await heartbeatPass(deps);
    await heartbeatPass(deps);
    expect(calls).toEqual(['heartbeat t1', 'refresh', 'heartbeat t1', 'refresh', ...['pause a', 'pause b']]);
  });
});
