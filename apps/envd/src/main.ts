import { writeFile } from 'node:fs/promises';
import { createLogger, type Logger } from '@wrenn/core';
import { loadConfig } from './config.js';
import { createEnvdServer } from './server.js';
import { ENVD_VERSION } from './version.js';

// Composition root of the daemon inside every sandbox. Signals from the host (via runsc kill):
// SIGUSR2 quiesces before a checkpoint, SIGUSR1 resumes after it (or after a restore), SIGTERM and
// SIGINT stop envd while leaving the sandbox's processes alone.
async function main(): Promise<void> {
  // Node's own start plus loading the bundle, in ms since the process began (a cold create waits
  // for all of it: docs/performance.md).
  const loadedMs = performance.now();
  const config = loadConfig();
  // JSON to stderr always: the pretty transport needs a worker thread file the bundle does not carry.
  const logger = createLogger({ name: 'envd', level: config.ENVD_LOG_LEVEL, pretty: false });

  if (config.ENVD_TASKS_MAX !== undefined) await limitTasks(logger, config.ENVD_TASKS_MAX);

  const server = await createEnvdServer({
    logger,
    defaultUser: config.ENVD_DEFAULT_USER,
    processBufferBytes: config.ENVD_PROCESS_BUFFER_BYTES,
    finishedProcessRetentionMs: config.ENVD_FINISHED_PROCESS_RETENTION_MS,
  });
  const builtMs = performance.now();
  await server.listen(config.ENVD_PORT, config.ENVD_HOST);
  const cpu = process.cpuUsage();
  logger.info(
    {
      version: ENVD_VERSION,
      // Since the process began: bundle loaded, server built (the fork-server starting beside it),
      // listening; CPU of all threads so far; whether V8's code cache of the bundle was used
      // (dist/envd.mjs).
      startMs: {
        loaded: Math.round(loadedMs),
        built: Math.round(builtMs),
        listening: Math.round(performance.now()),
        cpu: Math.round((cpu.user + cpu.system) / 1000),
      },
      codeCache: (globalThis as { __wrennEnvdCodeCache?: string }).__wrennEnvdCodeCache ?? 'none',
    },
    'envd started',
  );

  // Signals may arrive back to back; run their effects one after another.
  let queue: Promise<void> = Promise.resolve();
  function serially(what: string, fn: () => Promise<unknown>): void {
    queue = queue.then(fn).then(
      () => undefined,
      (err: unknown) => logger.error({ err }, `${what} failed`),
    );
  }

  process.on('SIGUSR2', () => serially('quiesce', () => server.quiesce()));
  process.on('SIGUSR1', () => serially('resume', () => server.resume()));
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () =>
      serially('shutdown', async () => {
        logger.info({ signal }, 'shutting down');
        await server.close();
        logger.flush();
        process.exit(0);
      }),
    );
  }
}

/**
 * A process storm must stop inside the sandbox with EAGAIN, as on Linux, before it reaches the host's
 * pids limit: there the runtime itself can no longer start threads and the whole sandbox dies.
 */
async function limitTasks(logger: Logger, max: number): Promise<void> {
  try {
    await writeFile('/sys/fs/cgroup/pids/pids.max', String(max));
  } catch (err) {
    logger.warn({ err, max }, 'could not set the task limit; only the host limit applies');
  }
}

// build.mjs evaluates the bundle once without starting envd, to record V8's code cache of it.
if (!process.env.ENVD_CODE_CACHE_BUILD) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `envd failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
