import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { hostagent } from '@wrenn/contracts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** Where setup.sh put runsc and the base image; tests use their own data dir beside it. */
export const installDir = process.env.WRENN_DIR ?? '/var/lib/wrenn';
export const testDataDir = path.join(installDir, 'e2e');

export type AgentClient = Client<typeof hostagent.HostAgentService>;

export interface AgentProcess {
  url: string;
  client: AgentClient;
  child: ChildProcess;
  /** What the agent wrote to stderr (its logs), for failure messages. */
  logs: () => string;
  /** SIGTERM and wait: the agent destroys its sandboxes and removes its rules. */
  stop: () => Promise<void>;
  /** SIGKILL: nothing is cleaned up (the next start must do it). */
  kill: () => Promise<void>;
}

/** Starts the real host agent (`wrenn agent`) as a child process on a free port. */
export async function startAgentProcess(
  env: Record<string, string> = {},
  opts: {
    keepPaused?: boolean;
    /** The agent's own defaults, as deployed (benches), not the tests' (no slots built ahead). */
    asDeployed?: boolean;
    /** How to reach a registered agent (mutual TLS); default: h2c to the URL it prints. */
    clientFor?: (url: string) => AgentClient;
  } = {},
): Promise<AgentProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'apps/cli/bin/wrenn.js'), 'agent'], {
    env: {
      ...process.env,
      WRENN_DIR: testDataDir,
      WRENN_IMAGES_DIR: path.join(installDir, 'images'),
      WRENN_RUNSC: path.join(installDir, 'bin/runsc'),
      WRENN_AGENT_LISTEN: '127.0.0.1:0',
      // Sandboxes in tests get no resolver: nothing they do may send traffic off this machine.
      WRENN_SANDBOX_NAMESERVERS: '',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
      // Most tests compare the host's netns and links with the sandboxes they made; slots built ahead
      // would be in that count. prepared-slots, isolation and network run with them (the default).
      ...(opts.asDeployed ? {} : { WRENN_PREPARED_SLOTS: '0' }),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  // WRENN_E2E_LOG=<file> keeps every agent's log (appended) for debugging a failed run.
  const logFile = process.env.WRENN_E2E_LOG
    ? createWriteStream(process.env.WRENN_E2E_LOG, { flags: 'a' })
    : undefined;
  // The agent survives an unhandled rejection (a bug) but the run that caused it must fail.
  let unhandledRejection: string | undefined;
  child.stderr.on('data', (b: Buffer) => {
    const recent = stderr.slice(-200) + b.toString();
    const at = recent.indexOf('unhandled promise rejection');
    if (at >= 0) unhandledRejection ??= recent.slice(recent.lastIndexOf('\n', at) + 1, at + 200);
    stderr = (stderr + b.toString()).slice(-200_000);
    logFile?.write(b);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`agent did not start in 60 s:\n${stderr}`)), 60_000);
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      const m = /listening on (https?:\/\/\S+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code} before listening:\n${stderr}`));
    });
  });
  const client =
    opts.clientFor?.(url) ??
    createClient(hostagent.HostAgentService, createConnectTransport({ baseUrl: url, httpVersion: '2' }));
  // Paused sandboxes outlive agents and running ones are adopted by the next (by design); one that an
  // earlier, failed run left behind would otherwise show up in this run's leak checks.
  if (!opts.keepPaused) {
    for (const { id } of (await client.listSandboxes({})).sandboxes) {
      console.warn(`e2e: destroying sandbox ${id}, left by an earlier run`);
      await client.destroySandbox({ sandboxId: id });
    }
  }
  return {
    url,
    child,
    client,
    logs: () => stderr,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      if (unhandledRejection)
        throw new Error(`the agent logged an unhandled rejection:\n${unhandledRejection}`);
    },
    kill: async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs `fn` with a fresh sandbox and always destroys it afterwards. */
export async function withSandbox<T>(
  client: AgentClient,
  params: MessageInitShape<typeof hostagent.CreateSandboxRequestSchema>,
  fn: (id: string) => Promise<T>,
): Promise<T> {
  const { sandbox } = await client.createSandbox(params);
  const id = sandbox!.id;
  try {
    return await fn(id);
  } finally {
    await client.destroySandbox({ sandboxId: id });
  }
}

/** Exec a shell command line and return text output. */
export async function sh(
  client: AgentClient,
  sandboxId: string,
  line: string,
  opts: { timeoutMs?: number; user?: string } = {},
) {
  const res = await client.exec({
    sandboxId,
    command: { cmd: line, timeoutMs: opts.timeoutMs ?? 30_000, user: opts.user ?? '' },
  });
  return {
    exitCode: res.exitCode,
    stdout: Buffer.from(res.stdout).toString('utf8'),
    stderr: Buffer.from(res.stderr).toString('utf8'),
    timedOut: res.timedOut,
  };
}

/** The error a call fails with; a call that succeeds fails the test. */
export async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('expected the call to fail');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
