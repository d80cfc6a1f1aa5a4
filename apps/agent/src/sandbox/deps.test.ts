import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { processAlive } from './deps.js';

describe('processAlive', () => {
  // kill(0, 0) signals the caller's own process group and always succeeds: a missing pid turned
  // into 0 looked alive forever (recovery after a failed checkpoint spun to its 5-minute deadline).
  it('is false for a missing or impossible pid, never a signal to our own process group', () => {
    expect(processAlive(undefined)).toBe(false);
    expect(processAlive(0)).toBe(false);
    expect(processAlive(-1)).toBe(false);
    expect(processAlive(1.5)).toBe(false);
  });

  it('is true for a process that exists and false once it has exited', async () => {
    expect(processAlive(process.pid)).toBe(true);
    const child = spawn('sleep', ['10']);
    const pid = child.pid!;
    expect(processAlive(pid)).toBe(true);
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(processAlive(pid)).toBe(false);
  });
});
