import { describe, expect, it } from 'vitest';
import { randomId } from './ids.js';
import { clampTimeoutSec, isSandboxId, MAX_TIMEOUT_SEC } from './sandbox-vocabulary.js';

describe('the sandbox vocabulary', () => {
  it('takes the ids the agent makes and nothing that could be a path or a host name part', () => {
    for (let i = 0; i < 20; i++) expect(isSandboxId(randomId())).toBe(true);
    expect(isSandboxId('abcdefgh')).toBe(true);
    expect(isSandboxId('a'.repeat(32))).toBe(true);
    for (const bad of ['abcdefg', 'a'.repeat(33), 'ABCDEFGH', 'abcd-efgh', 'abcd.efgh', '../abcdef', ''])
      expect(isSandboxId(bad), bad).toBe(false);
  });

  it('clamps timeouts to 1 s – 30 days', () => {
    expect(MAX_TIMEOUT_SEC).toBe(2_592_000);
    expect(clampTimeoutSec(0)).toBe(1);
    expect(clampTimeoutSec(-5)).toBe(1);
    expect(clampTimeoutSec(300)).toBe(300);
    expect(clampTimeoutSec(MAX_TIMEOUT_SEC + 1)).toBe(MAX_TIMEOUT_SEC);
  });
});
