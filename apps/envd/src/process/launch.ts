import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { Code, ConnectError } from '@wrenn/core';
import type { LinuxUser } from '../users/user-directory.js';

/** How to exec a process: argv, environment, directory and the identity to take. */
export interface LaunchPlan {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /**
   * Set when the process must change identity and no `setpriv` wrapper does it: then the spawner
   * switches uid/gid itself (supplementary groups are handled by the caller, see pty-process.ts).
   */
  credentials?: { uid: number; gid: number; groups: number[] };
}

export interface LaunchRequest {
  cmd: string;
  args: readonly string[];
  envs: Readonly<Record<string, string>>;
  cwd: string | undefined;
}

export interface LaunchContext {
  user: LinuxUser;
  /** Env vars every process gets (from /init). */
  sandboxEnv: Readonly<Record<string, string>>;
  /** Default working directory (from /init); the user's home when unset. */
  defaultWorkdir: string | undefined;
  /** Absolute path of util-linux `setpriv`, when the image has it. */
  setprivPath: string | undefined;
  /** envd's own uid: no identity change is needed for processes of that user. */
  ownUid: number;
}

const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** @throws ConnectError(InvalidArgument) for a cwd that is not a directory or a cmd that is not found. */
export async function planLaunch(req: LaunchRequest, ctx: LaunchContext): Promise<LaunchPlan> {
  const { user } = ctx;
  // envd's own environment (ENVD_*, the agent's variables) never leaks into user processes.
  const env: Record<string, string> = {
    PATH: defaultPath,
    ...ctx.sandboxEnv,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    ...(user.shell ? { SHELL: user.shell } : {}),
    ...req.envs,
  };

  const cwd = await resolveCwd(req.cwd, user, ctx.defaultWorkdir);
  const file = await resolveExecutable(req.cmd, env.PATH ?? defaultPath, cwd);
  const args = [...req.args];

  if (user.uid === ctx.ownUid) return { file, args, env, cwd };
  const plan = { file, args, env, cwd, credentials: { uid: user.uid, gid: user.gid, groups: user.groups } };
  return ctx.setprivPath ? withSetpriv(plan, ctx.setprivPath) : plan;
}

/**
 * The plan run through `setpriv`, which sets uid, gid and the supplementary groups and then execs
 * in place, so the pid we report is the command's. Node's own uid/gid spawn option would drop all
 * supplementary groups.
 */
export function withSetpriv(plan: LaunchPlan, setprivPath: string): LaunchPlan {
  const { credentials, ...rest } = plan;
  if (!credentials) return plan;
  const { uid, gid, groups } = credentials;
  const groupArgs = groups.length > 0 ? [`--groups=${groups.join(',')}`] : ['--clear-groups'];
  return {
    ...rest,
    file: setprivPath,
    args: [`--reuid=${uid}`, `--regid=${gid}`, ...groupArgs, '--', plan.file, ...plan.args],
  };
}

async function resolveCwd(
  requested: string | undefined,
  user: LinuxUser,
  defaultWorkdir: string | undefined,
): Promise<string> {
  if (requested === undefined || requested === '') {
    const fallback = defaultWorkdir ?? user.home;
    // Accounts like `nobody` have a home that does not exist; E2B would fail every command for them.
    return (await isDirectory(fallback)) ? fallback : '/';
  }
  const cwd = resolve(user.home, expandHome(requested, user.home));
  if (!(await isDirectory(cwd))) {
    throw new ConnectError(`cwd '${cwd}' does not exist`, Code.InvalidArgument);
  }
  return cwd;
}

export function expandHome(path: string, home: string): string {
  if (path === '~') return home;
  if (path.startsWith('~/')) return join(home, path.slice(2));
  return path;
}

async function resolveExecutable(cmd: string, pathVar: string, cwd: string): Promise<string> {
  if (cmd === '') throw new ConnectError('cmd is empty', Code.InvalidArgument);
  if (cmd.includes('/')) {
    const file = isAbsolute(cmd) ? cmd : resolve(cwd, cmd);
    if (await isExecutableFile(file)) return file;
    throw new ConnectError(`fork/exec ${cmd}: no such file or executable`, Code.InvalidArgument);
  }
  for (const dir of pathVar.split(delimiter)) {
    if (dir === '') continue;
    const file = join(resolve(cwd, dir), cmd);
    if (await isExecutableFile(file)) return file;
  }
  throw new ConnectError(`exec: "${cmd}": executable file not found in $PATH`, Code.InvalidArgument);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds util-linux `setpriv` once at start. */
export async function findSetpriv(): Promise<string | undefined> {
  for (const candidate of ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv', '/sbin/setpriv']) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}
