import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { installDir, repoRoot } from './agent-process.js';

export interface WrennProcess {
  child: ChildProcess;
  /** What it printed up to the line that said it was ready. */
  stdout: string;
  exited: Promise<number | null>;
  /** The last 200 kB of its stderr (its log). */
  logs: () => string;
}

/**
 * `wrenn <command>` on data dir `dir` (the host's images and runsc, free ports, the agent beating every
 * second), once its output matches `ready`.
 */
export async function startWrenn(
  command: 'up' | 'agent' | 'server',
  dir: string,
  ready: RegExp,
  env: Record<string, string> = {},
): Promise<WrennProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'apps/cli/bin/wrenn.js'), command], {
    env: {
      ...process.env,
      WRENN_DIR: dir,
      WRENN_IMAGES_DIR: path.join(installDir, 'images'),
      WRENN_RUNSC: path.join(installDir, 'bin/runsc'),
      WRENN_AGENT_LISTEN: '127.0.0.1:0',
      WRENN_SERVER_LISTEN: '127.0.0.1:0',
      WRENN_SANDBOX_NAMESERVERS: '',
      // Read by both halves: the agent beats every second, so its counts show up soon.
      WRENN_HEARTBEAT_SEC: '1',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-200_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stdout = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`wrenn ${command} did not come up in 90 s:\n${out}\n${stderr}`)),
      90_000,
    );
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`wrenn ${command} exited with ${code}:\n${out}\n${stderr}`)),
    );
  });
  return { child, stdout, exited, logs: () => stderr };
}

/** The API's address `wrenn up` or `wrenn server` printed. */
export const printedApiUrl = (stdout: string): string => /API:\s+(http:\/\/\S+)\/v1/.exec(stdout)![1]!;
