import { mkdtemp, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, createRouterTransport } from '@connectrpc/connect';
import { createAsyncIterable } from '@connectrpc/connect/protocol';
import { silentLogger } from '@wrenn/core';
import { process as processpb } from '@wrenn/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth, startEnvd, type EnvdFixture } from '../testing/envd-fixture.js';
import { SandboxDefaults } from '../init/sandbox-defaults.js';
import { addEvent, collect, emptyRun, isAlive, codeOf } from '../testing/process-events.js';
import { RequestUsers } from '../users/request-user.js';
import { UserDirectory } from '../users/user-directory.js';
import { createProcessService } from './process-service.js';
import { ProcessTable } from './process-table.js';

let envd: EnvdFixture;

beforeAll(async () => {
  // A small replay buffer so the backpressure test really overflows it.
  envd = await startEnvd({ processBufferBytes: 64 * 1024 });
});

afterAll(async () => {
  await envd.close();
});

function sh(script: string) {
  return { process: { cmd: '/bin/bash', args: ['-c', script] }, stdin: false };
}

describe('Start', () => {
  it('streams start first, then stdout, then a clean end', async () => {
    const run = await collect(envd.process.start(sh('echo hello')));
    expect(run.events[0]?.event.case).toBe('start');
    expect(run.pid).toBeGreaterThan(0);
    expect(run.stdout).toBe('hello\n');
    expect(run.end).toMatchObject({ exitCode: 0, exited: true, status: 'exit status 0' });
    expect(run.end?.error).toBeUndefined();
    expect(run.events.at(-1)?.event.case).toBe('end');
  });

  it('reports stderr and a non-zero exit like Go', async () => {
    const run = await collect(envd.process.start(sh('echo oops >&2; exit 7')));
    expect(run.stderr).toBe('oops\n');
    expect(run.stdout).toBe('');
    expect(run.end).toMatchObject({
      exitCode: 7,
      exited: true,
      status: 'exit status 7',
      error: 'exit status 7',
    });
  });

  // Found by CI (one hang in a run): an output the child closed with nothing in it, while its
  // request still waited for its other stream, had closed before anyone listened, so the end never came.
  it('ends every process at once whose stdout is empty (its streams arrive in any order)', async () => {
    for (let round = 0; round < 3; round++) {
      const runs = await Promise.all(
        Array.from({ length: 20 }, () => collect(envd.process.start(sh('echo oops >&2; exit 7')))),
      );
      for (const run of runs) expect(run.end).toMatchObject({ exitCode: 7, exited: true });
    }
  }, 30_000);

  it('delivers 100,000 lines completely and in order', async () => {
    const run = await collect(envd.process.start(sh('seq 1 100000')));
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines.length).toBe(100_000);
    expect(lines.every((line, i) => line === String(i + 1))).toBe(true);
    expect(run.end?.exitCode).toBe(0);
  });

  it('holds a fast producer back for a slow reader instead of dropping output (buffer is 64 KiB)', async () => {
    const run = emptyRun();
    let n = 0;
    for await (const res of envd.process.start(sh('seq 1 300000'))) {
      addEvent(run, res.event);
      // A slow client: the 2 MB of output cannot sit in a 64 KiB buffer while we dawdle.
      await new Promise((r) => setTimeout(r, n++ < 50 ? 10 : 0));
    }
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines.length).toBe(300_000);
    expect(lines.every((line, i) => line === String(i + 1))).toBe(true);
  });

  it('kills the process when Connect-Timeout-Ms elapses and ends the stream with deadline_exceeded', async () => {
    const run = emptyRun();
    const started = Date.now();
    const code = await codeOf(
      (async () => {
        for await (const res of envd.process.start(sh('echo begin; sleep 30'), { timeoutMs: 700 })) {
          addEvent(run, res.event);
        }
      })(),
    );
    expect(code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(run.stdout).toBe('begin\n');
    const pid = run.pid as number;
    // The retained end event tells how it ended.
    const after = await collect(envd.process.connect({ process: { selector: { case: 'pid', value: pid } } }));
    expect(after.end).toMatchObject({ exitCode: -1, exited: false, status: 'signal: killed' });
    expect(isAlive(pid)).toBe(false);
  });

  it('takes the children of a timed-out process down with it (the whole process group)', async () => {
    const run = emptyRun();
    const code = await codeOf(
      (async () => {
        for await (const res of envd.process.start(sh('sleep 31 & echo $!; wait'), { timeoutMs: 700 })) {
          addEvent(run, res.event);
        }
      })(),
    );
    expect(code).toBe(Code.DeadlineExceeded);
    const childPid = Number(run.stdout.trim());
    expect(childPid).toBeGreaterThan(0);
    await waitFor(() => !isAlive(childPid));
  });

  it('treats Connect-Timeout-Ms 0 as no limit and clamps values beyond a timer', async () => {
    for (const value of ['0', '9999999999']) {
      const run = await collect(
        envd.process.start(sh('sleep 0.2; echo survived'), { headers: { 'Connect-Timeout-Ms': value } }),
      );
      expect(run.stdout).toBe('survived\n');
      expect(run.end?.exitCode).toBe(0);
    }
  });

  it('sends keepalives on an idle stream at the requested interval', async () => {
    const run = await collect(
      envd.process.start(sh('sleep 2.5; echo done'), { headers: { 'Keepalive-Ping-Interval': '1' } }),
    );
    expect(run.keepalives).toBeGreaterThanOrEqual(1);
    expect(run.stdout).toBe('done\n');
  });

  it('runs in the home directory with HOME/USER set and request envs merged', async () => {
    const run = await collect(
      envd.process.start({
        process: {
          cmd: '/bin/bash',
          args: ['-c', 'pwd; echo $HOME $USER $LOGNAME $GREETING'],
          envs: { GREETING: 'hi' },
        },
      }),
    );
    expect(run.stdout).toBe(`${homedir()}\n${homedir()} root root hi\n`);
  });

  it('resolves a relative cwd against the home directory', async () => {
    const dir = await mkdtemp(join(homedir(), 'envd-cwd-'));
    try {
      const run = await collect(envd.process.start({ process: { cmd: 'pwd', cwd: basename(dir) } }));
      expect(run.stdout).toBe(`${dir}\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects a missing cwd and an unknown command with invalid_argument', async () => {
    const err = await collect(envd.process.start({ process: { cmd: 'pwd', cwd: '/does/not/exist' } })).catch(
      (e: unknown) => ConnectError.from(e),
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toBe("cwd '/does/not/exist' does not exist");
    expect(await codeOf(collect(envd.process.start({ process: { cmd: 'no-such-command-xyz' } })))).toBe(
      Code.InvalidArgument,
    );
  });

  it('runs as the Basic-auth user with that user’s ids and groups', async () => {
    const asNobody = envd.clients(basicAuth('nobody'));
    const run = await collect(asNobody.process.start(sh('id -u; id -g; id -G; echo $USER $HOME')));
    const nobody = await collect(envd.process.start(sh('id -u nobody; id -g nobody; id -G nobody')));
    const [uid, gid, groups] = nobody.stdout.trim().split('\n');
    expect(run.stdout.trim().split('\n')).toEqual([uid, gid, groups, 'nobody /nonexistent']);
    // Not root, and none of root's groups leaked.
    expect(uid).not.toBe('0');
    expect(run.stdout.split('\n')[2]?.split(' ')).not.toContain('0');
  });

  it('runs a PTY as the Basic-auth user', async () => {
    const asNobody = envd.clients(basicAuth('nobody'));
    const run = await collect(
      asNobody.process.start({
        process: { cmd: '/bin/sh', args: ['-c', 'id -un; id -G'] },
        pty: { size: { cols: 80, rows: 24 } },
      }),
    );
    const lines = run.pty.trim().split(/\r?\n/);
    expect(lines[0]).toBe('nobody');
    expect(lines[1]?.split(' ')).not.toContain('0');
  });

  it('rejects an unknown user with unauthenticated', async () => {
    const ghost = envd.clients(basicAuth('ghost-user-xyz'));
    expect(await codeOf(collect(ghost.process.start(sh('true'))))).toBe(Code.Unauthenticated);
  });
});

describe('Connect', () => {
  it('replays buffered output to a late subscriber, then follows live output', async () => {
    const first = envd.process.start(sh('echo one; sleep 0.5; echo two'));
    let pid = 0;
    // Read only the start event, then hang up: the process keeps running.
    for await (const res of first) {
      if (res.event?.event.case === 'start') pid = res.event.event.value.pid;
      break;
    }
    await new Promise((r) => setTimeout(r, 150));
    expect(isAlive(pid)).toBe(true);
    const run = await collect(envd.process.connect({ process: { selector: { case: 'pid', value: pid } } }));
    expect(run.events[0]?.event.case).toBe('start');
    expect(run.pid).toBe(pid);
    expect(run.stdout).toBe('one\ntwo\n');
    expect(run.end?.exitCode).toBe(0);
  });

  it('replays the output and end event of a finished process', async () => {
    const done = await collect(envd.process.start(sh('echo finished; exit 4')));
    const again = await collect(
      envd.process.connect({ process: { selector: { case: 'pid', value: done.pid as number } } }),
    );
    expect(again.stdout).toBe('finished\n');
    expect(again.end).toMatchObject({ exitCode: 4, status: 'exit status 4' });
  });

  it('answers not_found for an unknown pid', async () => {
    const code = await codeOf(
      collect(envd.process.connect({ process: { selector: { case: 'pid', value: 999999 } } })),
    );
    expect(code).toBe(Code.NotFound);
  });
});

describe('input, signals and tags', () => {
  async function startBackground(req: Parameters<typeof envd.process.start>[0]) {
    const run = emptyRun();
    const stream = envd.process.start(req)[Symbol.asyncIterator]();
    const first = await stream.next();
    if (!first.done) addEvent(run, first.value.event);
    const rest = (async () => {
      for (let r = await stream.next(); !r.done; r = await stream.next()) addEvent(run, r.value.event);
      return run;
    })();
    return { pid: run.pid as number, run, done: rest };
  }

  it('feeds stdin and closes it', async () => {
    const { pid, done } = await startBackground({ process: { cmd: 'cat' }, stdin: true });
    const selector = { process: { selector: { case: 'pid' as const, value: pid } } };
    await envd.process.sendInput({
      ...selector,
      input: { input: { case: 'stdin', value: Buffer.from('abc\n') } },
    });
    await envd.process.sendInput({
      ...selector,
      input: { input: { case: 'stdin', value: Buffer.from('def') } },
    });
    await envd.process.closeStdin(selector);
    const run = await done;
    expect(run.stdout).toBe('abc\ndef');
    expect(run.end?.exitCode).toBe(0);
  });

  it('refuses stdin when the process was started without it', async () => {
    const { pid, done } = await startBackground({ process: { cmd: 'sleep', args: ['5'] }, stdin: false });
    const selector = { process: { selector: { case: 'pid' as const, value: pid } } };
    expect(
      await codeOf(
        envd.process.sendInput({ ...selector, input: { input: { case: 'stdin', value: Buffer.from('x') } } }),
      ),
    ).toBe(Code.FailedPrecondition);
    await envd.process.sendSignal({ ...selector, signal: processpb.Signal.SIGKILL });
    await done;
  });

  it('delivers SIGTERM and SIGKILL and rejects other signals', async () => {
    const a = await startBackground(sh('sleep 30'));
    const selA = { process: { selector: { case: 'pid' as const, value: a.pid } } };
    expect(await codeOf(envd.process.sendSignal({ ...selA, signal: processpb.Signal.UNSPECIFIED }))).toBe(
      Code.Unimplemented,
    );
    await envd.process.sendSignal({ ...selA, signal: processpb.Signal.SIGTERM });
    expect((await a.done).end).toMatchObject({ exitCode: -1, exited: false, status: 'signal: terminated' });

    const b = await startBackground(sh('sleep 30'));
    await envd.process.sendSignal({
      process: { selector: { case: 'pid', value: b.pid } },
      signal: processpb.Signal.SIGKILL,
    });
    expect((await b.done).end).toMatchObject({
      exitCode: -1,
      status: 'signal: killed',
      error: 'signal: killed',
    });
    // A finished process is gone for signals, which the SDK's kill() reads as "already dead".
    expect(await codeOf(envd.process.sendSignal({ ...selA, signal: processpb.Signal.SIGKILL }))).toBe(
      Code.NotFound,
    );
    expect(
      await codeOf(
        envd.process.sendInput({
          process: { selector: { case: 'pid', value: 999999 } },
          input: { input: { case: 'stdin', value: Buffer.from('x') } },
        }),
      ),
    ).toBe(Code.NotFound);
  });

  it('selects processes by tag and lists only running ones', async () => {
    const tag = `svc-${Date.now()}`;
    const a = await startBackground({ ...sh('echo tagged; sleep 30'), tag });
    const list = await envd.process.list({});
    const mine = list.processes.find((p) => p.pid === a.pid);
    expect(mine?.tag).toBe(tag);
    expect(mine?.config?.cmd).toBe('/bin/bash');
    expect(mine?.config?.args).toEqual(['-c', 'echo tagged; sleep 30']);

    const byTag = envd.process.connect({ process: { selector: { case: 'tag', value: tag } } });
    const iter = byTag[Symbol.asyncIterator]();
    const first = await iter.next();
    expect(first.done ? undefined : first.value.event?.event).toMatchObject({
      case: 'start',
      value: { pid: a.pid },
    });
    // Killed only once it has said its line (on a busy machine the signal could come first).
    for (let next = await iter.next(); !next.done; next = await iter.next()) {
      const event = next.value.event?.event;
      if (event?.case === 'data' && event.value.output.case === 'stdout') break;
    }
    await iter.return?.();

    await envd.process.sendSignal({
      process: { selector: { case: 'tag', value: tag } },
      signal: processpb.Signal.SIGKILL,
    });
    const run = await a.done;
    expect(run.stdout).toBe('tagged\n');
    expect((await envd.process.list({})).processes.some((p) => p.pid === a.pid)).toBe(false);
    expect(
      await codeOf(
        collect(envd.process.connect({ process: { selector: { case: 'tag', value: 'no-such-tag' } } })),
      ),
    ).toBe(Code.NotFound);
  });

  it('runs a PTY: output, input and resize', async () => {
    const { pid, run, done } = await startBackground({
      process: {
        cmd: '/bin/bash',
        args: ['-c', 'stty size; read line; stty size; echo "got:$line"'],
        envs: {},
      },
      pty: { size: { cols: 80, rows: 24 } },
    });
    const selector = { process: { selector: { case: 'pid' as const, value: pid } } };
    await waitFor(() => run.pty.includes('24 80'));
    await envd.process.update({ ...selector, pty: { size: { cols: 100, rows: 40 } } });
    await envd.process.sendInput({
      ...selector,
      input: { input: { case: 'pty', value: Buffer.from('hello\r') } },
    });
    const final = await done;
    expect(final.stdout).toBe('');
    expect(final.pty).toContain('24 80');
    expect(final.pty).toContain('40 100');
    expect(final.pty).toContain('got:hello');
    expect(final.end?.exitCode).toBe(0);
    // Resizing a plain process is refused.
    const plain = await startBackground(sh('sleep 30'));
    expect(
      await codeOf(
        envd.process.update({
          process: { selector: { case: 'pid', value: plain.pid } },
          pty: { size: { cols: 1, rows: 1 } },
        }),
      ),
    ).toBe(Code.FailedPrecondition);
    await envd.process.sendSignal({
      process: { selector: { case: 'pid', value: plain.pid } },
      signal: processpb.Signal.SIGKILL,
    });
    await plain.done;
  });
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('StreamInput', () => {
  // Client streaming needs HTTP/2 on the client side, so this one runs in-process.
  it('selects the process with the first message and writes the data messages in order', async () => {
    const table = new ProcessTable(60_000, silentLogger());
    const defaults = new SandboxDefaults('root');
    const service = createProcessService({
      table,
      users: new RequestUsers(new UserDirectory(), defaults),
      defaults,
      setprivPath: undefined,
      forkServer: Promise.resolve(undefined),
      bufferBytes: 1024 * 1024,
      logger: silentLogger(),
    });
    const client = createClient(
      processpb.Process,
      createRouterTransport(({ service: register }) => register(processpb.Process, service)),
    );
    const stream = client.start({ process: { cmd: 'cat' }, stdin: true })[Symbol.asyncIterator]();
    const run = emptyRun();
    const first = await stream.next();
    if (!first.done) addEvent(run, first.value.event);
    const pid = run.pid as number;
    const selector = { selector: { case: 'pid' as const, value: pid } };
    const input = [
      create(processpb.StreamInputRequestSchema, { event: { case: 'start', value: { process: selector } } }),
      create(processpb.StreamInputRequestSchema, { event: { case: 'keepalive', value: {} } }),
      ...['one ', 'two ', 'three'].map((part) =>
        create(processpb.StreamInputRequestSchema, {
          event: { case: 'data', value: { input: { input: { case: 'stdin', value: Buffer.from(part) } } } },
        }),
      ),
    ];
    await client.streamInput(createAsyncIterable(input));
    await client.closeStdin({ process: selector });
    for (let r = await stream.next(); !r.done; r = await stream.next()) addEvent(run, r.value.event);
    expect(run.stdout).toBe('one two three');
    expect(run.end?.exitCode).toBe(0);
  });
});

describe('retention', () => {
  it('forgets a finished process a while after its last subscriber left', async () => {
    const short = await startEnvd({ finishedProcessRetentionMs: 300 });
    try {
      const done = await collect(short.process.start(sh('echo gone-soon')));
      const selector = { process: { selector: { case: 'pid' as const, value: done.pid as number } } };
      // Within the window a late subscriber still gets everything, and keeps it alive while reading.
      expect((await collect(short.process.connect(selector))).stdout).toBe('gone-soon\n');
      await new Promise((r) => setTimeout(r, 700));
      expect(await codeOf(collect(short.process.connect(selector)))).toBe(Code.NotFound);
    } finally {
      await short.close();
    }
  });
});
