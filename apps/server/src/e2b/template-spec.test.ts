import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Template, waitForPort, type TemplateClass } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDefaultBaseImage, parseBuildRequest, translateBuildStart } from './template-spec.js';

let context: string;

beforeAll(async () => {
  context = await mkdtemp(path.join(tmpdir(), 'e2b-template-spec-'));
  await mkdir(path.join(context, 'app'));
  await writeFile(path.join(context, 'app', 'main.sh'), 'echo hi\n');
  await writeFile(path.join(context, 'config.txt'), 'x=1\n');
});
afterAll(() => rm(context, { recursive: true, force: true }));

/** What the SDK posts to start a build (its own serializer, hashes included). */
async function sdkBody(template: TemplateClass): Promise<unknown> {
  return JSON.parse(await Template.toJSON(template, true)) as unknown;
}

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return { status: (err as { status?: number }).status, message: (err as Error).message };
  }
  throw new Error('not refused');
};

describe("E2B's template build request", () => {
  it('takes name, name:tag and tags; sizes default to /v1/builds’ and disk grows by minFreeDiskMb', () => {
    expect(parseBuildRequest({ name: 'my-app' })).toEqual({
      templateName: 'my-app',
      vcpus: 2,
      memoryMb: 1024,
      diskMb: 4096,
      tags: [],
    });
    expect(
      parseBuildRequest({
        name: 'my-app:v1',
        tags: ['prod', 'v1'],
        cpuCount: 2,
        memoryMB: 1024,
        minFreeDiskMb: 1000,
      }),
    ).toEqual({ templateName: 'my-app', vcpus: 2, memoryMb: 1024, diskMb: 5096, tags: ['v1', 'prod'] });
    expect(parseBuildRequest({ alias: 'legacy' }).templateName).toBe('legacy');
  });

  it('refuses each bad field by name', () => {
    expect(refusal(() => parseBuildRequest({}))).toEqual({ status: 400, message: 'name: is required' });
    expect(refusal(() => parseBuildRequest({ name: 'Team/App' })).message).toMatch(/^name: /);
    expect(refusal(() => parseBuildRequest({ name: 'app:bad tag' })).message).toMatch(/^name: the tag/);
    expect(refusal(() => parseBuildRequest({ name: 'app', tags: ['ok', 'no/slash'] })).message).toMatch(
      /^tags\[1\]: /,
    );
    expect(refusal(() => parseBuildRequest({ name: 'app', cpuCount: 0 })).message).toMatch(/^cpuCount: /);
    expect(refusal(() => parseBuildRequest({ name: 'app', memoryMB: 64 })).message).toMatch(/^memoryMB: /);
    expect(refusal(() => parseBuildRequest({ name: 'app', minFreeDiskMb: -1 })).message).toMatch(
      /^minFreeDiskMb: /,
    );
  });
});

describe("E2B's template build start, from the SDK's own JSON", () => {
  it('maps every step type, users, modes, the start and ready commands', async () => {
    const template = Template({ fileContextPath: context })
      .fromBaseImage()
      .runCmd('apt-get install -y jq', { user: 'root' })
      .runCmd(['echo a', 'echo b'])
      .copy('app', '/opt/app', { user: 'user', mode: 0o755 })
      .copy('config.txt', '/etc/app.conf')
      .setEnvs({ GREETING: 'hello world', EMPTY: '' })
      .setWorkdir('/opt/app')
      .setUser('user')
      .setStartCmd('python3 -m http.server 8000', waitForPort(8000));
    const { spec, skipCache, uploads } = translateBuildStart(await sdkBody(template));
    expect(skipCache).toBe(false);
    expect(spec.from).toEqual({ template: 'base' });
    const [copyApp, copyConf] = [spec.steps[2], spec.steps[3]] as { filesHash: string }[];
    expect(spec.steps).toEqual([
      { type: 'run', command: 'apt-get install -y jq', user: 'root' },
      { type: 'run', command: 'echo a && echo b' },
      {
        type: 'copy',
        src: 'app',
        dest: '/opt/app',
        filesHash: copyApp!.filesHash,
        user: 'user',
        mode: '0755',
      },
      { type: 'copy', src: 'config.txt', dest: '/etc/app.conf', filesHash: copyConf!.filesHash },
      { type: 'env', env: { GREETING: 'hello world', EMPTY: '' } },
      { type: 'workdir', path: '/opt/app' },
      { type: 'user', user: 'user' },
    ]);
    expect(copyApp!.filesHash).toMatch(/^[0-9a-f]{64}$/);
    expect(uploads).toEqual([
      { index: 2, hash: copyApp!.filesHash },
      { index: 3, hash: copyConf!.filesHash },
    ]);
    expect(spec.startCmd).toBe('python3 -m http.server 8000');
    expect(spec.readyCmd).toBe('[ -n "$(ss -Htuln sport = :8000)" ]');
  });

  it('maps the base: e2bdev/base (any tag) to base, other images with credentials, templates by name', async () => {
    for (const image of ['e2bdev/base', 'e2bdev/base:latest', 'docker.io/e2bdev/base:2.0'])
      expect(isDefaultBaseImage(image), image).toBe(true);
    for (const image of ['e2bdev/base-x', 'ubuntu:22.04', 'ghcr.io/e2bdev/base'])
      expect(isDefaultBaseImage(image), image).toBe(false);
    expect(translateBuildStart(await sdkBody(Template().fromImage('e2bdev/base:v3'))).spec.from).toEqual({
      template: 'base',
    });
    expect(translateBuildStart(await sdkBody(Template().fromUbuntuImage('24.04'))).spec.from).toEqual({
      image: 'ubuntu:24.04',
    });
    expect(
      translateBuildStart(
        await sdkBody(Template().fromImage('registry.example.com/app:1', { username: 'u', password: 'p' })),
      ).spec.from,
    ).toEqual({ image: 'registry.example.com/app:1', credentials: { username: 'u', password: 'p' } });
    expect(translateBuildStart(await sdkBody(Template().fromTemplate('my-app:v1'))).spec.from).toEqual({
      template: 'my-app:v1',
    });
  });

  it('takes fromDockerfile as the SDK reduces it: its FROM image, then steps, CMD as the start command', async () => {
    const dockerfile = [
      'FROM python:3.12-slim',
      'RUN pip install flask',
      'COPY --chown=user app /srv/app',
      'ENV PORT=8000 MODE=prod',
      'WORKDIR /srv/app',
      'USER user',
      'CMD ["python3", "-m", "http.server", "8000"]',
    ].join('\n');
    const { spec } = translateBuildStart(
      await sdkBody(Template({ fileContextPath: context }).fromDockerfile(dockerfile)),
    );
    expect(spec.from).toEqual({ image: 'python:3.12-slim' });
    expect(spec.steps.map((s) => s.type)).toEqual([
      'user',
      'workdir',
      'run',
      'copy',
      'env',
      'workdir',
      'user',
    ]);
    expect(spec.steps[3]).toMatchObject({ type: 'copy', src: 'app', dest: '/srv/app', user: 'user' });
    expect(spec.steps[4]).toEqual({ type: 'env', env: { PORT: '8000', MODE: 'prod' } });
    expect(spec).toMatchObject({ startCmd: 'python3 -m http.server 8000', readyCmd: 'sleep 20' });
  });

  it('skips the cache when the template or any step is forced', async () => {
    expect(translateBuildStart(await sdkBody(Template().fromBaseImage().runCmd('a'))).skipCache).toBe(false);
    expect(
      translateBuildStart(await sdkBody(Template().fromBaseImage().skipCache().runCmd('a'))).skipCache,
    ).toBe(true);
    expect(
      translateBuildStart(await sdkBody(Template().skipCache().fromBaseImage().runCmd('a'))).skipCache,
    ).toBe(true);
    expect(translateBuildStart({ fromTemplate: 'base', force: true, steps: [] }).skipCache).toBe(true);
  });

  it('refuses each bad field by its path in the SDK’s JSON', async () => {
    const aws = await sdkBody(
      Template().fromAWSRegistry('1.dkr.ecr.us-east-1.amazonaws.com/app', {
        accessKeyId: 'a',
        secretAccessKey: 'b',
        region: 'us-east-1',
      }),
    );
    expect(refusal(() => translateBuildStart(aws)).message).toMatch(
      /^fromImageRegistry\.type: "aws" registries/,
    );
    const gcp = { fromImage: 'gcr.io/p/app', fromImageRegistry: { type: 'gcp', serviceAccountJson: '{}' } };
    expect(refusal(() => translateBuildStart(gcp)).message).toMatch(/^fromImageRegistry\.type: "gcp"/);
    const cases: [unknown, RegExp][] = [
      [{ steps: [{ type: 'RUN', args: [] }] }, /^steps\[0\]\.args: RUN takes/],
      [
        {
          steps: [
            { type: 'RUN', args: ['ls'] },
            { type: 'FROB', args: [] },
          ],
        },
        /^steps\[1\]\.type: unknown step/,
      ],
      [{ steps: [{ type: 'ENV', args: ['A'] }] }, /^steps\[0\]\.args: ENV takes/],
      [
        { steps: [{ type: 'ENV', args: ['1A', 'x'] }] },
        /^steps\[0\]\.args: "1A" is not an environment variable name/,
      ],
      [{ steps: [{ type: 'COPY', args: ['a', '/b', '', ''] }] }, /^steps\[0\]\.filesHash: is required/],
      [
        { steps: [{ type: 'COPY', args: ['a', '/b'], filesHash: 'abc' }] },
        /^steps\[0\]\.filesHash: must be a SHA-256/,
      ],
      [
        { steps: [{ type: 'COPY', args: ['a', '/b', '', '999'], filesHash: 'a'.repeat(64) }] },
        /^steps\[0\]\.args: must be an octal mode/,
      ],
      [{ steps: [{ type: 'USER', args: ['Root User'] }] }, /^steps\[0\]\.args: must be a Linux user/],
      [{ steps: [{ type: 'RUN', args: ['ls', 'bad user'] }] }, /^steps\[0\]\.args: must be a Linux user/],
      [{ steps: [{ type: 'WORKDIR', args: ['/a', '/b'] }] }, /^steps\[0\]\.args: WORKDIR takes/],
      [{ steps: [{ type: 'RUN', args: 'ls' }] }, /^steps\[0\]\.args: /],
      [{ fromImage: 'ubuntu', fromTemplate: 'base' }, /^fromTemplate: give fromImage or fromTemplate/],
      [
        { fromImage: 'app', fromImageRegistry: { type: 'registry', username: 'u' } },
        /^fromImageRegistry\.password/,
      ],
      [{ startCmd: 5 }, /^startCmd: /],
    ];
    for (const [body, message] of cases) {
      const err = refusal(() => translateBuildStart(body));
      expect(err.status, JSON.stringify(body)).toBe(400);
      expect(err.message, JSON.stringify(body)).toMatch(message);
    }
  });
});
