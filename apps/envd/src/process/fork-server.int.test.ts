import { execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Code, ConnectError } from '@connectrpc/connect';
import { process as processpb } from '@wrenn/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth, startEnvd, type EnvdFixture } from '../testing/envd-fixture.js';
import { collect, isAlive, codeOf } from '../testing/process-events.js';

// `comm` is cut at 15 characters; /proc/PID/comm is readable by every user, exe is not.
const forkServerComm = 'wrenn-forkserve';
const parentScript = 'echo "$PPID $(cat /proc/$PPID/comm)"';

let envd: EnvdFixture;

beforeAll(async () => {
  envd = await startEnvd();
});

afterAll(async () => {
  await envd.close();
});

function sh(script: string, opts: { stdin?: boolean } = {}) {
  return { process: { cmd: '/bin/sh', args: ['-c', script] }, stdin: opts.stdin ?? false };
}

async function parentOf(fixture: EnvdFixture): Promise<{ ppid: number; comm: string }> {
  const run = await collect(fixture.process.start(sh(parentScript)));
  const [ppid = '', comm = ''] = run.stdout.trim().split(' ');
  return { ppid: Number(ppid), comm };
}

async function nextEvent(it: AsyncIterator<processpb.StartResponse>) {
  const result = await it.next();
  if (result.done) throw new Error('the stream ended early');
  return result.value.event?.event;
}

describe('fork-server', () => {
  it('is the parent of pipe processes, and not of PTY processes', async () => {
    const parent = await parentOf(envd);
    expect(parent.comm).toBe(forkServerComm);
    expect(parent.ppid).not.toBe(process.pid);

    const pty = await collect(
      envd.process.start({
        process: { cmd: '/bin/sh', args: ['-c', parentScript] },
        pty: { size: { cols: 80, rows: 24 } },
      }),
    );
    expect(pty.pty).toContain(String(process.pid));
  });

  it('reports exit codes, signals and stderr', async () => {
    const failed = await collect(envd.process.start(sh('echo oops >&2; exit 3')));
    expect(failed.stderr).toBe('oops\n');
    expect(failed.end).toMatchObject({ exitCode: 3, exited: true, status: 'exit status 3' });

    const killed = await collect(envd.process.start(sh('kill -TERM $$; sleep 5')));
    expect(killed.end).toMatchObject({ exitCode: -1, exited: false, status: 'signal: terminated' });
  });

  it('runs the child as a session leader that SIGKILL reaches with its group', async () => {
    const stream = envd.process.start(sh('sleep 30 & echo "$$ $(ps -o sid= -p $$)"; wait'));
    const it = stream[Symbol.asyncIterator]();
    let pid = 0;
    let line = '';
    while (!line) {
      const e = await nextEvent(it);
      if (e?.case === 'start') pid = e.value.pid;
      if (e?.case === 'data' && e.value.output.case === 'stdout')
        line = Buffer.from(e.value.output.value).toString();
    }
    const [shellPid, sid] = line.trim().split(/\s+/);
    expect(Number(shellPid)).toBe(pid);
    expect(Number(sid)).toBe(pid);
    await envd.process.sendSignal({
      process: { selector: { case: 'pid', value: pid } },
      signal: processpb.Signal.SIGKILL,
    });
    const rest = await collect({ [Symbol.asyncIterator]: () => it });
    expect(rest.end?.status).toBe('signal: killed');
  });

  it('feeds stdin and closes it', async () => {
    const stream = envd.process.start(sh('cat; echo done', { stdin: true }));
    const it = stream[Symbol.asyncIterator]();
    const first = await nextEvent(it);
    const pid = first?.case === 'start' ? first.value.pid : 0;
    const selector = { process: { selector: { case: 'pid' as const, value: pid } } };
    await envd.process.sendInput({
      ...selector,
      input: { input: { case: 'stdin', value: Buffer.from('hi\n') } },
    });
    await envd.process.closeStdin(selector);
    const run = await collect({ [Symbol.asyncIterator]: () => it });
    expect(run.stdout).toBe('hi\ndone\n');
    expect(run.end?.exitCode).toBe(0);
  });

  it('gives an unwanted stdin /dev/null', async () => {
    const run = await collect(envd.process.start(sh('readlink /proc/self/fd/0')));
    expect(run.stdout).toBe('/dev/null\n');
  });

  it('switches to the user’s uid, gid and groups itself (no setpriv in between)', async () => {
    const exec = promisify(execFile);
    const expected = await Promise.all(
      ['-u', '-g', '-G'].map(async (flag) => (await exec('id', [flag, 'nobody'])).stdout.trim()),
    );
    const nobody = envd.clients(basicAuth('nobody'));
    const run = await collect(nobody.process.start(sh(`id -u; id -g; id -G; ${parentScript}`)));
    const lines = run.stdout.trim().split('\n');
    expect(lines.slice(0, 3)).toEqual(expected);
    expect(lines[3]?.split(' ')[1]).toBe(forkServerComm);
  });

  it('turns an exec failure into invalid_argument, and runs a script without #! under /bin/sh', async () => {
    expect(await codeOf(collect(envd.process.start({ process: { cmd: '/nonexistent/cmd' } })))).toBe(
      Code.InvalidArgument,
    );
    // The launch plan finds this file; only execve learns that its interpreter is missing.
    const badInterpreter = join(envd.dir, 'bad-interpreter');
    await writeFile(badInterpreter, '#!/nonexistent/interpreter\n');
    await chmod(badInterpreter, 0o755);
    try {
      await collect(envd.process.start({ process: { cmd: badInterpreter }, stdin: false }));
      expect.unreachable();
    } catch (err) {
      const cerr = ConnectError.from(err);
      expect(cerr.code).toBe(Code.InvalidArgument);
      expect(cerr.rawMessage).toContain('ENOENT');
    }

    const noShebang = join(envd.dir, 'no-shebang');
    await writeFile(noShebang, 'echo "from sh: $1"\n');
    await chmod(noShebang, 0o755);
    const run = await collect(envd.process.start({ process: { cmd: noShebang, args: ['x'] }, stdin: false }));
    expect(run.stdout).toBe('from sh: x\n');
  });

  it('completes 50 concurrent starts', async () => {
    const runs = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        collect(envd.process.start(sh(`echo ${i}; echo err${i} >&2`, { stdin: i % 2 === 0 }))),
      ),
    );
    runs.forEach((run, i) => {
      expect(run.stdout).toBe(`${i}\n`);
      expect(run.stderr).toBe(`err${i}\n`);
      expect(run.end?.exitCode).toBe(0);
    });
  });
});

describe('without the fork-server', () => {
  it('falls back to Node’s spawn when the binary is missing', async () => {
    const fallback = await startEnvd({ forkServerPaths: ['/nonexistent/wrenn-forkserver'] });
    try {
      expect((await parentOf(fallback)).ppid).toBe(process.pid);
      const nobody = fallback.clients(basicAuth('nobody'));
      const run = await collect(nobody.process.start(sh('id -u')));
      expect(run.stdout.trim()).toBe((await promisify(execFile)('id', ['-u', 'nobody'])).stdout.trim());
    } finally {
      await fallback.close();
    }
  });

  it('falls back when the fork-server dies, and still ends the streams of its orphans', async () => {
    const own = await startEnvd();
    try {
      const stream = own.process.start(sh('sleep 1; echo orphan'));
      const it = stream[Symbol.asyncIterator]();
      await it.next();
      const { ppid, comm } = await parentOf(own);
      expect(comm).toBe(forkServerComm);
      process.kill(ppid, 'SIGKILL');
      await expect.poll(() => isAlive(ppid)).toBe(false);

      expect((await parentOf(own)).ppid).toBe(process.pid);
      const orphan = await collect({ [Symbol.asyncIterator]: () => it });
      expect(orphan.stdout).toBe('orphan\n');
      expect(orphan.end).toBeDefined();
    } finally {
      await own.close();
    }
  });
});
