import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@connectrpc/connect';
import { startAgentProcess, sh, type AgentProcess } from './support/agent-process.js';
import { eventually } from './support/host-state.js';

let agent: AgentProcess;
let sandboxId: string;

beforeAll(async () => {
  agent = await startAgentProcess();
  const { sandbox } = await agent.client.createSandbox({});
  sandboxId = sandbox!.id;
});

afterAll(async () => {
  if (sandboxId) await agent.client.destroySandbox({ sandboxId }).catch(() => undefined);
  await agent?.stop();
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The target still holds `old`, and no partial upload file is left in its directory (eventually). */
async function expectOldAndNoPartial(target: string) {
  await eventually(async () => {
    const res = await sh(agent.client, sandboxId, `cat ${target}; ls -a /home/user | grep -c wrenn-`);
    expect(res.stdout).toBe('old\n0\n');
  });
}

describe('files in a real sandbox', () => {
  it('writes and reads a small file (unary), visible to commands', async () => {
    await agent.client.writeFile({
      sandboxId,
      path: '/home/user/hello.txt',
      content: Buffer.from('hi there\n'),
    });
    const { content } = await agent.client.readFile({ sandboxId, path: '/home/user/hello.txt' });
    expect(Buffer.from(content).toString()).toBe('hi there\n');
    const res = await sh(
      agent.client,
      sandboxId,
      'cat /home/user/hello.txt; stat -c %U /home/user/hello.txt',
    );
    expect(res.stdout).toBe('hi there\nuser\n');
  });

  it('streams a 50 MB file in and out byte-identical', async () => {
    const size = 50 * 1024 * 1024;
    const data = randomBytes(size);
    const chunkSize = 256 * 1024;
    // eslint-disable-next-line @typescript-eslint/require-await -- the RPC takes an AsyncIterable; the data is in memory
    async function* upload() {
      yield { part: { case: 'header' as const, value: { sandboxId, path: '/tmp/big.bin', user: 'root' } } };
      for (let off = 0; off < size; off += chunkSize) {
        yield { part: { case: 'chunk' as const, value: data.subarray(off, off + chunkSize) } };
      }
      yield { part: { case: 'end' as const, value: { size: BigInt(size) } } };
    }
    const written = await agent.client.writeFileStream(upload());
    expect(written.bytesWritten).toBe(BigInt(size));

    // The sandbox sees the same bytes…
    const inside = await sh(agent.client, sandboxId, 'sha256sum /tmp/big.bin | cut -d" " -f1');
    expect(inside.stdout.trim()).toBe(sha256(data));

    // …and reading it back streams the same bytes, in chunks.
    const hash = createHash('sha256');
    let received = 0;
    let chunks = 0;
    for await (const msg of agent.client.readFileStream({ sandboxId, path: '/tmp/big.bin' })) {
      hash.update(msg.chunk);
      received += msg.chunk.byteLength;
      chunks++;
    }
    expect(received).toBe(size);
    expect(chunks).toBeGreaterThan(1);
    expect(hash.digest('hex')).toBe(sha256(data));
  });

  it('keeps the old file when an upload is cancelled midway, and the agent carries on', async () => {
    await agent.client.writeFile({ sandboxId, path: '/home/user/keep.txt', content: Buffer.from('old\n') });
    const abort = new AbortController();
    async function* upload() {
      yield { part: { case: 'header' as const, value: { sandboxId, path: '/home/user/keep.txt' } } };
      for (let i = 0; i < 64; i++) {
        yield { part: { case: 'chunk' as const, value: randomBytes(256 * 1024) } };
        if (i === 16) {
          // Let the first megabytes reach envd before the caller goes away.
          await new Promise((r) => setTimeout(r, 200));
          abort.abort();
        }
      }
    }
    const err = await agent.client
      .writeFileStream(upload(), { signal: abort.signal })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    // The agent still answers, the target is untouched and the partial file beside it goes away
    // (the agent removes it once it sees the cancellation).
    await expectOldAndNoPartial('/home/user/keep.txt');
    expect(agent.child.exitCode).toBeNull();
  });

  it('writes nothing from a stream that stops without its end message, or whose end miscounts', async () => {
    await agent.client.writeFile({ sandboxId, path: '/home/user/whole.txt', content: Buffer.from('old\n') });
    // eslint-disable-next-line @typescript-eslint/require-await -- the RPC takes an AsyncIterable
    async function* upload(end?: bigint) {
      yield { part: { case: 'header' as const, value: { sandboxId, path: '/home/user/whole.txt' } } };
      yield { part: { case: 'chunk' as const, value: Buffer.from('new, but cut off\n') } };
      if (end !== undefined) yield { part: { case: 'end' as const, value: { size: end } } };
    }
    const cut = await agent.client.writeFileStream(upload()).catch((e: unknown) => ConnectError.from(e));
    expect((cut as ConnectError).code).toBe(Code.Aborted);
    const miscounted = await agent.client
      .writeFileStream(upload(999n))
      .catch((e: unknown) => ConnectError.from(e));
    expect((miscounted as ConnectError).code).toBe(Code.InvalidArgument);
    expect((miscounted as ConnectError).rawMessage).toMatch(/^end\.size: /);
    // The partial file beside the target goes too (envd may create it after the upload was cut).
    await expectOldAndNoPartial('/home/user/whole.txt');
  });

  it('answers NotFound for a missing file', async () => {
    const err = await agent.client
      .readFile({ sandboxId, path: '/no/such/file' })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it('lists a directory (ListDir): name, type, size, modified, depth; NotFound and a file refused', async () => {
    await sh(
      agent.client,
      sandboxId,
      'mkdir -p /home/user/listing/sub && printf 12345 > /home/user/listing/five.txt && ' +
        'touch /home/user/listing/sub/deep && ln -s five.txt /home/user/listing/link',
    );
    const before = Date.now();
    const { entries, truncated } = await agent.client.listDir({ sandboxId, path: '/home/user/listing' });
    expect(truncated).toBe(false);
    expect(entries.map((e) => [e.name, e.type, e.path])).toEqual([
      ['five.txt', 'file', '/home/user/listing/five.txt'],
      ['link', 'file', '/home/user/listing/link'], // a symlink has its target's type
      ['sub', 'dir', '/home/user/listing/sub'],
    ]);
    const five = entries[0]!;
    expect(five.size).toBe(5n);
    expect(five.permissions).toMatch(/^-rw/);
    const modified = Number(five.modifiedTime!.seconds) * 1000;
    expect(Math.abs(modified - before)).toBeLessThan(10 * 60_000);
    expect(entries[1]!.symlinkTarget).toMatch(/five\.txt$/);

    const deep = await agent.client.listDir({ sandboxId, path: '/home/user/listing', depth: 2 });
    expect(deep.entries.map((e) => e.path)).toContain('/home/user/listing/sub/deep');

    const missing = await agent.client
      .listDir({ sandboxId, path: '/no/such/dir' })
      .catch((e: unknown) => ConnectError.from(e));
    expect((missing as ConnectError).code).toBe(Code.NotFound);
    const file = await agent.client
      .listDir({ sandboxId, path: '/home/user/listing/five.txt' })
      .catch((e: unknown) => ConnectError.from(e));
    expect((file as ConnectError).code).toBe(Code.InvalidArgument);
  });

  it('enforces the disk limit inside the sandbox', async () => {
    const { sandbox } = await agent.client.createSandbox({ diskMb: 256 });
    try {
      // Both the rootfs layer and /tmp count against disk_mb.
      for (const target of ['/home/user/fill', '/tmp/fill']) {
        const line = `dd if=/dev/zero of=${target} bs=1M count=400 2>&1; echo rc=$?; rm -f ${target}`;
        const res = await sh(agent.client, sandbox!.id, line, { timeoutMs: 120_000 });
        expect(res.stdout).toMatch(/No space left on device/);
        expect(res.stdout).toMatch(/rc=1/);
      }
    } finally {
      await agent.client.destroySandbox({ sandboxId: sandbox!.id });
    }
  });
});
