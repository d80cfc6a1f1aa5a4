import { describe, expect, it } from 'vitest';
import { exitStatus } from './exit-status.js';

describe('exitStatus', () => {
  it('reports a clean exit without an error', () => {
    expect(exitStatus(0, null)).toEqual({ exitCode: 0, exited: true, status: 'exit status 0' });
  });

  it('reports a non-zero exit as the error too', () => {
    expect(exitStatus(3, null)).toEqual({
      exitCode: 3,
      exited: true,
      status: 'exit status 3',
      error: 'exit status 3',
    });
  });

  it('reports a signal the way Go does, with exit code -1', () => {
    expect(exitStatus(null, 'SIGKILL')).toEqual({
      exitCode: -1,
      exited: false,
      status: 'signal: killed',
      error: 'signal: killed',
    });
    expect(exitStatus(null, 15).status).toBe('signal: terminated');
    expect(exitStatus(0, 2).status).toBe('signal: interrupt');
  });
});
