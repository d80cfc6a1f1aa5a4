import { describe, expect, it } from 'vitest';
import { Code, ExecError } from '@wrenn/core';
import { registryError, skopeoMessage } from './image-pull.js';

const fatal = (msg: string) =>
  new ExecError(['skopeo'], 1, `time="2026-12-07T07:05:27Z" level=fatal msg="${msg.replace(/"/g, '\\"')}"\n`);

describe("skopeo's failures as Connect errors", () => {
  it('keeps the registry’s words, without the restated reference', () => {
    expect(
      skopeoMessage(
        'time="x" level=fatal msg="Error parsing image name \\"docker://r/a:1\\": reading manifest 1 in r/a: manifest unknown: manifest unknown"',
      ),
    ).toBe('reading manifest 1 in r/a: manifest unknown: manifest unknown');
  });

  it('maps each kind of failure to its code', () => {
    const cases: [string, Code][] = [
      ['reading manifest 1 in r/a: unauthorized: authentication required', Code.PermissionDenied],
      ['requested access to the resource is denied', Code.PermissionDenied],
      ['reading manifest 2 in r/a: manifest unknown: manifest unknown', Code.NotFound],
      [
        'pinging container registry r: Get "http://r/v2/": dial tcp r: connect: connection refused',
        Code.Unavailable,
      ],
      [
        'pinging container registry r: Get "https://r/v2/": http: server gave HTTP response to HTTPS client',
        Code.FailedPrecondition,
      ],
      ['x509: certificate signed by unknown authority', Code.FailedPrecondition],
      ['writing blob: write /x: no space left on device', Code.ResourceExhausted],
      [
        'choosing an image from manifest list r: no image found in manifest list for architecture amd64',
        Code.FailedPrecondition,
      ],
    ];
    for (const [msg, code] of cases) {
      const err = registryError(fatal(msg), 'r/a:1');
      expect([msg, err.code]).toEqual([msg, code]);
      expect(err.rawMessage).toBe(
        code === Code.FailedPrecondition && msg.includes('HTTP response')
          ? `pulling r/a:1: ${msg} (the registry speaks plain HTTP: list it in the agent's WRENN_INSECURE_REGISTRIES to allow that)`
          : `pulling r/a:1: ${msg}`,
      );
    }
  });

  it('a missing tool is named', () => {
    const err = registryError(new ExecError(['skopeo', 'inspect'], null, 'spawn skopeo ENOENT'), 'r/a:1');
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/^skopeo is not installed/);
  });

  it('a timeout is deadline_exceeded', () => {
    expect(registryError(new ExecError(['skopeo'], null, '', true), 'r/a:1').code).toBe(
      Code.DeadlineExceeded,
    );
  });
});
