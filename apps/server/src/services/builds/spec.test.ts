import { describe, expect, it } from 'vitest';
import { layerKeys } from './runner.js';
import type { RecipeError } from './spec.js';
import { applyStateStep, BuildSpecSchema, INITIAL_STATE, parseRecipe } from './spec.js';

const HASH = 'c'.repeat(64);

describe('recipes', () => {
  it('reads each instruction, a bare line as RUN, and skips blanks and comments', () => {
    expect(
      parseRecipe(
        [
          'RUN apt-get install -y jq',
          '',
          '# a comment',
          'echo bare',
          'COPY --chown=user --chmod=0755 app /srv/app',
          'ENV A=1 B=x=y',
          'WORKDIR /srv',
          'USER root',
        ],
        HASH,
      ),
    ).toEqual([
      { type: 'run', command: 'apt-get install -y jq' },
      { type: 'run', command: 'echo bare' },
      { type: 'copy', src: 'app', dest: '/srv/app', filesHash: HASH, user: 'user', mode: '0755' },
      { type: 'env', env: { A: '1', B: 'x=y' } },
      { type: 'workdir', path: '/srv' },
      { type: 'user', user: 'root' },
    ]);
  });

  it('names the line of a bad instruction', () => {
    const error = (lines: string[], hash?: string) => {
      try {
        parseRecipe(lines, hash);
      } catch (err) {
        return { line: (err as RecipeError).line, message: (err as Error).message };
      }
      return undefined;
    };
    expect(error(['RUN true', 'ENV nope'])).toEqual({
      line: 1,
      message: 'ENV takes KEY=VALUE pairs, got "nope"',
    });
    expect(error(['COPY a b'])?.message).toMatch(/context_hash/);
    expect(error(['COPY --own=x a b'], HASH)?.message).toMatch(/unknown flag --own=x/);
    expect(error(['COPY a'], HASH)?.message).toBe('COPY takes a source and a destination');
  });

  it('keeps ENV, WORKDIR and USER as state for the steps after them', () => {
    let state = INITIAL_STATE;
    for (const step of parseRecipe(
      ['ENV A=1', 'WORKDIR /w', 'USER root', 'ENV A=2 B=3', 'RUN true'],
      undefined,
    ))
      state = applyStateStep(state, step);
    expect(state).toEqual({ env: { A: '2', B: '3' }, workdir: '/w', user: 'root' });
  });

  it('rejects specs the engine cannot run, naming the field', () => {
    const bad = BuildSpecSchema.safeParse({
      from: { template: 'base' },
      steps: [{ type: 'copy', src: 'a', dest: 'b', filesHash: 'x' }],
    });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['steps', 0, 'filesHash']);
  });
});

describe('cache keys', () => {
  const steps = parseRecipe(['RUN a', 'RUN b', 'RUN c'], undefined);

  it('chain every step: a changed step changes its key and every key after it, none before', () => {
    const one = layerKeys('team:x', 'template:base', 'snapshot', steps);
    const changed = layerKeys(
      'team:x',
      'template:base',
      'snapshot',
      parseRecipe(['RUN a', 'RUN B', 'RUN c'], undefined),
    );
    expect(changed[0]).toBe(one[0]);
    expect(changed[1]).not.toBe(one[1]);
    expect(changed[2]).not.toBe(one[2]);
  });

  it("differ by scope, base and kind (one team never reuses another team's layers)", () => {
    const keys = [
      layerKeys('team:x', 'template:base', 'snapshot', steps)[0],
      layerKeys('team:y', 'template:base', 'snapshot', steps)[0],
      layerKeys('team:x', 'template:snap-1', 'snapshot', steps)[0],
      layerKeys('team:x', 'template:base', 'image', steps)[0],
    ];
    expect(new Set(keys).size).toBe(4);
  });
});
