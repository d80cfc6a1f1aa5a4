import { pino, type DestinationStream, type Logger } from 'pino';
import { currentLogContext } from './log-context.js';

export type { Logger };

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Pretty output for people; JSON otherwise. Defaults to whether stderr is a terminal. */
  pretty?: boolean;
  /** Where JSON lines go instead of stderr (tests read them). */
  destination?: DestinationStream;
}

// One logger for every program: JSON lines in production, pretty in a terminal, always to stderr so
// a program's stdout stays free for its real output. Every line carries the log context of the code
// that wrote it (`withLogContext`: the request id of the call it serves).
export function createLogger(opts: LoggerOptions): Logger {
  const pretty = opts.destination ? false : (opts.pretty ?? process.stderr.isTTY);
  const level = opts.level ?? 'info';
  const mixin = () => ({ ...currentLogContext() });
  if (pretty) {
    return pino({
      name: opts.name,
      level,
      mixin,
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'HH:MM:ss.l' } },
    });
  }
  return pino(
    { name: opts.name, level, mixin },
    opts.destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that drops everything: for tests and library use without a host program. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
