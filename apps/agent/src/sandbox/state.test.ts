import { describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import {
  assertRunning,
  canTransition,
  transition,
  TRANSITIONS,
  type SandboxState,
  type Stateful,
} from './state.js';

const STATES = Object.keys(TRANSITIONS) as SandboxState[];

function recordIn(state: SandboxState, statusReason = ''): Stateful {
  return { state, info: { id: 'sbx', status: 'pending', statusReason } };
}

describe('sandbox state transitions', () => {
  const pairs = STATES.flatMap((from) => STATES.map((to) => [from, to] as const));
  const legal = pairs.filter(([from, to]) => canTransition(from, to));
  const illegal = pairs.filter(([from, to]) => !canTransition(from, to));

  it('has the moves the lifecycle makes, and no way back from destroyed', () => {
    expect(legal).toContainEqual(['running', 'pausing']);
    expect(legal).toContainEqual(['pausing', 'running']);
    expect(legal).toContainEqual(['resuming', 'paused']);
    expect(legal).toContainEqual(['error', 'stopping']);
    expect(illegal).toContainEqual(['paused', 'running']);
    expect(illegal).toContainEqual(['stopped', 'running']);
    expect(TRANSITIONS.destroyed).toEqual([]);
  });

  it.each(legal)('%s → %s is legal and sets the public status', (from, to) => {
    const record = recordIn(from);
    transition(record, to);
    expect(record.state).toBe(to);
    const expected = {
      creating: 'pending',
      running: 'running',
      pausing: 'running',
      flattening: 'running',
      paused: 'paused',
      resuming: 'paused',
      stopping: 'stopped',
      stopped: 'stopped',
      error: 'error',
      destroyed: 'stopped',
    }[to];
    expect(record.info.status).toBe(expected);
  });

  it.each(illegal)('%s → %s is refused as an internal error and changes nothing', (from, to) => {
    const record = recordIn(from, 'why');
    let thrown: unknown;
    try {
      transition(record, to, 'new reason');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConnectError);
    expect((thrown as ConnectError).code).toBe(Code.Internal);
    expect((thrown as ConnectError).rawMessage).toBe(
      `internal error: sandbox sbx cannot go from ${from} to ${to}`,
    );
    expect(record).toEqual(recordIn(from, 'why'));
  });

  it('clears the reason on entering running and keeps it elsewhere unless a new one is given', () => {
    const resuming = recordIn('resuming', 'paused after 60 s without activity');
    transition(resuming, 'paused');
    expect(resuming.info.statusReason).toBe('paused after 60 s without activity');
    transition(resuming, 'resuming');
    transition(resuming, 'running', 'ignored');
    expect(resuming.info.statusReason).toBe('');
    transition(resuming, 'stopping', 'out of memory');
    expect(resuming.info.statusReason).toBe('out of memory');
  });
});

describe('assertRunning', () => {
  it('lets a running sandbox through', () => {
    expect(() => assertRunning(recordIn('running'), 'use')).not.toThrow();
  });

  it.each(STATES.filter((s) => s !== 'running'))(
    'refuses a sandbox that is %s, naming the state',
    (state) => {
      const label = state === 'creating' ? 'pending' : state;
      expect(() => assertRunning(recordIn(state), 'use')).toThrow(
        `cannot use sandbox sbx: it is ${label}, not running`,
      );
    },
  );

  it('adds the reason a sandbox stopped', () => {
    expect(() => assertRunning(recordIn('stopped', 'out of memory'), 'ping')).toThrow(
      'cannot ping sandbox sbx: it is stopped, not running (out of memory)',
    );
  });
});
