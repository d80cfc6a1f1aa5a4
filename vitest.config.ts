import { defineConfig } from 'vitest/config';

// Tiers by file name (docs/testing.md): *.test.ts in-process, *.int.test.ts real sockets/processes,
// test/e2e/*.e2e.test.ts real agent + real gVisor sandboxes (root only).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{apps,packages,internal}/*/src/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/node_modules/**'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['{apps,packages,internal}/*/src/**/*.int.test.ts'],
          testTimeout: 60_000,
          // Opening PGlite (WASM) took over 10 s on a loaded 2-core machine.
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
