import { pino, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Pretty output for people; JSON otherwise. Defaults to whether stderr is a terminal. */
  pretty?: boolean;
}

// One logger for every program: JSON lines in production, pretty in a terminal, always to stderr so
// a program's stdout stays free for its real output.
export function createLogger(opts: LoggerOptions): Logger {
  const pretty = opts.pretty ?? process.stderr.isTTY;
  const level = opts.level ?? 'info';
  if (pretty) {
    return pino({
      name: opts.name,
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'HH:MM:ss.l' } },
    });
  }
  return pino({ name: opts.name, level }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything: for tests and library use without a host program. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
