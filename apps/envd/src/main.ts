import { writeFile } from 'node:fs/promises';
import { createLogger } from '@wrenn/core';
import { loadConfig } from './config.js';
import { createEnvdServer } from './server.js';
import { ENVD_VERSION } from './version.js';

// Composition root of the daemon inside every sandbox. Signals from the host (via runsc kill):
// SIGUSR2 quiesces before a checkpoint, SIGUSR1 resumes after it (or after a restore), SIGTERM and
// SIGINT stop envd while leaving the sandbox's processes alone.
const config = loadConfig();
// JSON to stderr always: the pretty transport needs a worker thread file the bundle does not carry.
const logger = createLogger({ name: 'envd', level: config.ENVD_LOG_LEVEL, pretty: false });

if (config.ENVD_TASKS_MAX !== undefined) await limitTasks(config.ENVD_TASKS_MAX);

const server = await createEnvdServer({
  logger,
  defaultUser: config.ENVD_DEFAULT_USER,
  processBufferBytes: config.ENVD_PROCESS_BUFFER_BYTES,
  finishedProcessRetentionMs: config.ENVD_FINISHED_PROCESS_RETENTION_MS,
});
await server.listen(config.ENVD_PORT, config.ENVD_HOST);
logger.info({ version: ENVD_VERSION }, 'envd started');

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

/**
 * A process storm must stop inside the sandbox with EAGAIN, as on Linux, before it reaches the host's
 * pids limit: there the runtime itself can no longer start threads and the whole sandbox dies.
 */
async function limitTasks(max: number): Promise<void> {
  try {
    await writeFile('/sys/fs/cgroup/pids/pids.max', String(max));
  } catch (err) {
    logger.warn({ err, max }, 'could not set the task limit; only the host limit applies');
  }
}
