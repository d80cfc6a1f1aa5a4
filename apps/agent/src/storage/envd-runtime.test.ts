import { describe, expect, it } from 'vitest';
import { EnvdRuntimeBundle, parseLdd } from './envd-runtime.js';

describe('the bundled envd runtime', () => {
  it('reads ldd: libraries by soname, the loader as ld.so, no vDSO', () => {
    const text = [
      '\tlinux-vdso.so.1 (0x00007ffd4b5f2000)',
      '\tlibdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f726232d000)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f7262000000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f7261e1e000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f7262346000)',
      '',
    ].join('\n');
    expect(parseLdd(text)).toEqual([
      { name: 'libdl.so.2', file: '/lib/x86_64-linux-gnu/libdl.so.2' },
      { name: 'libstdc++.so.6', file: '/lib/x86_64-linux-gnu/libstdc++.so.6' },
      { name: 'libc.so.6', file: '/lib/x86_64-linux-gnu/libc.so.6' },
      { name: 'ld.so', file: '/lib64/ld-linux-x86-64.so.2' },
    ]);
  });

  it('refuses a library ldd cannot find, or no loader', () => {
    expect(() => parseLdd('\tlibfoo.so.1 => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x1)\n')).toThrow(
      /libfoo/,
    );
    expect(() => parseLdd('\tstatically linked\n')).toThrow(/loader/);
  });

  it('starts envd through the bundle’s loader, never the image’s', () => {
    expect(EnvdRuntimeBundle.command('/opt/wrenn/runtime', '/opt/wrenn/envd/envd.mjs')).toEqual([
      '/opt/wrenn/runtime/ld.so',
      '--library-path',
      '/opt/wrenn/runtime',
      '/opt/wrenn/runtime/node',
      '/opt/wrenn/envd/envd.mjs',
    ]);
  });
});
