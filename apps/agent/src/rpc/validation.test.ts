import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import {
  MAX_TIMEOUT_SEC,
  validateCommand,
  validateCreate,
  validateExecInput,
  validateImportImage,
  validateMetricsRange,
  validatePtySize,
  validateTemplateNameField,
  validateTimeoutSec,
  validateWarmPool,
} from './validation.js';

const limits = { maxVcpus: 4, maxMemoryMb: 8192, maxDiskMb: 20_480 };

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    const e = ConnectError.from(err);
    expect(e.code).toBe(Code.InvalidArgument);
    return e.rawMessage.split(':')[0]!;
  }
  throw new Error('expected InvalidArgument');
}

describe('validation of the pause/snapshot/metrics inputs', () => {
  it('leaves unset sizes to the template and keeps the timeout', () => {
    const params = validateCreate(create(hostagent.CreateSandboxRequestSchema, { timeoutSec: 30 }), limits);
    expect(params).toMatchObject({ template: 'base', vcpus: undefined, memoryMb: undefined, timeoutSec: 30 });
  });

  it("takes a built template's default user and workdir, naming a bad one", () => {
    const made = (fields: { defaultUser?: string; defaultWorkdir?: string }) =>
      validateCreate(create(hostagent.CreateSandboxRequestSchema, fields), limits);
    expect(made({ defaultUser: 'root', defaultWorkdir: '/srv/site' })).toMatchObject({
      defaultUser: 'root',
      defaultWorkdir: '/srv/site',
    });
    expect(made({})).not.toHaveProperty('defaultUser');
    expect(fieldOf(() => made({ defaultUser: 'Bad User' }))).toBe('default_user');
    expect(fieldOf(() => made({ defaultWorkdir: 'relative/dir' }))).toBe('default_workdir');
  });

  it('takes timeouts from 0 (never) to 30 days and names the field otherwise', () => {
    expect(validateTimeoutSec(0)).toBe(0);
    expect(validateTimeoutSec(MAX_TIMEOUT_SEC)).toBe(MAX_TIMEOUT_SEC);
    expect(fieldOf(() => validateTimeoutSec(-1))).toBe('timeout_sec');
    expect(fieldOf(() => validateTimeoutSec(MAX_TIMEOUT_SEC + 1))).toBe('timeout_sec');
    expect(
      fieldOf(() => validateCreate(create(hostagent.CreateSandboxRequestSchema, { timeoutSec: -5 }), limits)),
    ).toBe('timeout_sec');
  });

  it('allows template names from an allowlist only', () => {
    expect(validateTemplateNameField('my-snap_1')).toBe('my-snap_1');
    for (const bad of ['', '..', '../x', 'a/b', 'Upper', '-lead', 'x'.repeat(64), 'sp ace', 'dot.ted']) {
      expect(
        fieldOf(() => validateTemplateNameField(bad)),
        bad,
      ).toBe('name');
    }
  });

  it('maps metric ranges, defaulting to raw samples, and refuses unknown ones', () => {
    expect(validateMetricsRange(hostagent.MetricsRange.METRICS_RANGE_UNSPECIFIED)).toBe('10m');
    expect(validateMetricsRange(hostagent.MetricsRange.METRICS_RANGE_2H)).toBe('2h');
    expect(validateMetricsRange(hostagent.MetricsRange.METRICS_RANGE_24H)).toBe('24h');
    expect(fieldOf(() => validateMetricsRange(7 as hostagent.MetricsRange))).toBe('range');
  });
});

describe('validation of interactive commands', () => {
  const command = (init: { interactive?: boolean; pty?: { cols: number; rows: number } }) =>
    create(hostagent.CommandSchema, { cmd: 'sh', ...init });

  it('takes input later and terminals on ExecStream only', () => {
    expect(validateCommand(command({ interactive: true }), 'stream').interactive).toBe(true);
    expect(fieldOf(() => validateCommand(command({ interactive: true })))).toBe('command.interactive');
    const pty = { cols: 80, rows: 24 };
    expect(validateCommand(command({ pty }), 'stream').pty).toEqual(pty);
    expect(fieldOf(() => validateCommand(command({ pty })))).toBe('command.pty');
  });

  it('bounds terminal sizes and input, naming the field', () => {
    expect(
      fieldOf(() => validatePtySize(create(hostagent.PtySizeSchema, { cols: 0, rows: 24 }), 'size')),
    ).toBe('size.cols');
    expect(
      fieldOf(() => validatePtySize(create(hostagent.PtySizeSchema, { cols: 80, rows: 5000 }), 'size')),
    ).toBe('size.rows');
    expect(fieldOf(() => validatePtySize(undefined, 'size'))).toBe('size');
    expect(fieldOf(() => validateExecInput(new Uint8Array(17 * 1024 * 1024)))).toBe('data');
    expect(validateExecInput(new Uint8Array(3)).byteLength).toBe(3);
  });
});

describe('validation of SetWarmPool', () => {
  it('takes a template name and a size from 0 to 64 (at most the host’s maximum)', () => {
    expect(validateWarmPool({ template: 'base', size: 0 }, 256)).toEqual({ template: 'base', size: 0 });
    expect(validateWarmPool({ template: 'my-snap_1', size: 64 }, 256)).toEqual({
      template: 'my-snap_1',
      size: 64,
    });
    expect(fieldOf(() => validateWarmPool({ template: '', size: 1 }, 256))).toBe('template');
    expect(fieldOf(() => validateWarmPool({ template: 'Base', size: 1 }, 256))).toBe('template');
    expect(fieldOf(() => validateWarmPool({ template: 'base', size: -1 }, 256))).toBe('size');
    expect(fieldOf(() => validateWarmPool({ template: 'base', size: 65 }, 256))).toBe('size');
    expect(fieldOf(() => validateWarmPool({ template: 'base', size: 9 }, 8))).toBe('size');
  });
});

describe('validation of ImportImage', () => {
  const ok = { name: 'img', image: 'debian:12', username: '', password: '' };

  it('names the field that is wrong', () => {
    expect(fieldOf(() => validateImportImage({ ...ok, name: '' }))).toBe('name');
    expect(fieldOf(() => validateImportImage({ ...ok, name: 'Has Spaces' }))).toBe('name');
    expect(fieldOf(() => validateImportImage({ ...ok, image: '' }))).toBe('image');
    expect(fieldOf(() => validateImportImage({ ...ok, image: 'https://x.io/a' }))).toBe('image');
    expect(fieldOf(() => validateImportImage({ ...ok, username: 'u' }))).toBe('password');
    expect(fieldOf(() => validateImportImage({ ...ok, password: 'p' }))).toBe('username');
    expect(fieldOf(() => validateImportImage({ ...ok, username: 'a:b', password: 'p' }))).toBe('username');
    expect(fieldOf(() => validateImportImage({ ...ok, username: 'u', password: 'p\n' }))).toBe('password');
  });

  it('never repeats the password in its message', () => {
    try {
      validateImportImage({ ...ok, username: 'u', password: 'secret\u0001' });
    } catch (err) {
      expect(ConnectError.from(err).rawMessage).not.toContain('secret');
      return;
    }
    throw new Error('expected InvalidArgument');
  });

  it('normalises the reference and keeps credentials only when both are given', () => {
    expect(validateImportImage(ok)).toEqual({
      name: 'img',
      ref: { registry: 'docker.io', repository: 'library/debian', tag: '12', digest: undefined },
    });
    expect(validateImportImage({ ...ok, username: 'u', password: 'p' }).credentials).toEqual({
      username: 'u',
      password: 'p',
    });
  });
});
