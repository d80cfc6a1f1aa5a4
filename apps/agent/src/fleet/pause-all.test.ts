import { silentLogger } from '@wrenn/core';
import { describe, expect, it } from 'vitest';
import { pauseAll, Supervision } from './pause-all.js';

describe('supervision by the control plane', () => {
  it('is lost after `grace` failed heartbeats in a row, not before', () => {
    const s = new Supervision(3);
    expect([s.heartbeatFailed(), s.heartbeatFailed()]).toEqual([false, false]);
    expect(s.heartbeatSucceeded()).toBe(false);
    expect([s.heartbeatFailed(), s.heartbeatFailed(), s.heartbeatFailed()]).toEqual([false, false, true]);
    // Every further failure pauses again (whatever started running meanwhile).
    expect(s.heartbeatFailed()).toBe(true);
    expect(s.isLost).toBe(true);
    // The control plane answers: supervision is back, and the caller hears it was lost.
    expect(s.heartbeatSucceeded()).toBe(true);
    expect(s.isLost).toBe(false);
  });
});

describe('PauseAll', () => {
  it('pauses every running sandbox, leaves the others, and carries on past a failed pause', async () => {
    const paused: string[] = [];
    const sandboxes = {
      list: () => [
        { id: 'run1', status: 'running' },
        { id: 'stuck', status: 'running' },
        { id: 'asleep', status: 'paused' },
        { id: 'dead', status: 'stopped' },
        { id: 'run2', status: 'running' },
      ],
      pause: (id: string) => {
        if (id === 'stuck') return Promise.reject(new Error('checkpoint failed'));
        return Promise.resolve(paused.push(id));
      },
    };
    expect((await pauseAll(sandboxes, silentLogger())).sort()).toEqual(['run1', 'run2']);
    expect(paused.sort()).toEqual(['run1', 'run2']);
  });
});

describe('what PauseAll paused, in heartbeats', () => {
  it('is marked until the sandbox leaves paused, then forgotten', () => {
    const s = new Supervision(3);
    s.pausedUnsupervised.add('a');
    s.pausedUnsupervised.add('b');
    const first = s.report([
      { id: 'a', status: 'paused' },
      { id: 'b', status: 'paused' },
      { id: 'c', status: 'paused' },
    ]);
    expect(first).toEqual([
      { id: 'a', status: 'paused', paused_unsupervised: true },
      { id: 'b', status: 'paused', paused_unsupervised: true },
      { id: 'c', status: 'paused' },
    ]);
    // a was resumed, b destroyed: neither is marked again, even if a is paused later by someone else.
    s.report([{ id: 'a', status: 'running' }]);
    expect(s.report([{ id: 'a', status: 'paused' }])).toEqual([{ id: 'a', status: 'paused' }]);
    expect(s.pausedUnsupervised.size).toBe(0);
  });
});
