import { describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import {
  formatImageReference,
  isInsecureRegistry,
  parseImageReference,
  pinnedReference,
} from './image-reference.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('image references', () => {
  it("fills in Docker's defaults", () => {
    const cases: [string, string][] = [
      ['debian', 'docker.io/library/debian:latest'],
      ['debian:12', 'docker.io/library/debian:12'],
      ['library/debian:12', 'docker.io/library/debian:12'],
      ['docker.io/library/debian:12', 'docker.io/library/debian:12'],
      ['e2bdev/code-interpreter:latest', 'docker.io/e2bdev/code-interpreter:latest'],
      ['127.0.0.1:5000/tests/tiny:1', '127.0.0.1:5000/tests/tiny:1'],
      ['localhost/app', 'localhost/app:latest'],
      ['ghcr.io/org/a/b_c.d-e:v1.2.3-rc_1', 'ghcr.io/org/a/b_c.d-e:v1.2.3-rc_1'],
      [`quay.io/x/y@${DIGEST}`, `quay.io/x/y@${DIGEST}`],
      [`quay.io/x/y:1@${DIGEST}`, `quay.io/x/y:1@${DIGEST}`],
      ['[::1]:5000/a', '[::1]:5000/a:latest'],
    ];
    for (const [text, full] of cases)
      expect([text, formatImageReference(parseImageReference(text))]).toEqual([text, full]);
  });

  it('splits registry, repository, tag and digest', () => {
    expect(parseImageReference('127.0.0.1:5000/tests/tiny:1')).toEqual({
      registry: '127.0.0.1:5000',
      repository: 'tests/tiny',
      tag: '1',
      digest: undefined,
    });
    const pinned = parseImageReference(`debian@${DIGEST}`);
    expect(pinned).toMatchObject({ tag: undefined, digest: DIGEST });
    expect(pinnedReference(parseImageReference('a.io/b:1'), DIGEST)).toBe(`a.io/b@${DIGEST}`);
  });

  it('refuses what is not a reference, naming the field', () => {
    for (const bad of [
      '',
      'Debian',
      'debian:',
      'debian:-x',
      'docker://debian',
      'a b',
      'debian@sha256:abc',
      `debian@md5:${'a'.repeat(32)}`,
      'a.io:99999/x',
      'a.io//x',
      '-a.io/x',
      'x/../y',
      `a/${'b'.repeat(300)}`,
      'debian\0',
    ]) {
      let err: ConnectError | undefined;
      try {
        parseImageReference(bad, 'image');
      } catch (e) {
        err = ConnectError.from(e);
      }
      expect([bad, err?.code]).toEqual([bad, Code.InvalidArgument]);
      expect(err?.rawMessage).toMatch(/^image: /);
    }
  });

  it('allows plain HTTP only for listed registries (loopback included)', () => {
    expect(isInsecureRegistry('127.0.0.1:5000', ['127.0.0.1:5000'])).toBe(true);
    expect(isInsecureRegistry('Registry.LAN', ['registry.lan'])).toBe(true);
    expect(isInsecureRegistry('127.0.0.1:5001', ['127.0.0.1:5000'])).toBe(false);
    expect(isInsecureRegistry('localhost:5000', ['127.0.0.1:5000'])).toBe(false);
    expect(isInsecureRegistry('127.0.0.1:5000', [])).toBe(false);
  });
});
