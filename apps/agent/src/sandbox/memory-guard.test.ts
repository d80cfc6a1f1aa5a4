import { pollUntil } from '@wrenn/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BASE, fakeHost, type FakeEnvd, type FakeHost } from '../testing/fakes.js';
import { memoryHeadroomMb } from './memory-guard.js';

const MiB = 1024 * 1024;
let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
});
afterEach(() => host.cleanup());

async function until(check: () => boolean): Promise<void> {
  const ok = await pollUntil(() => (check() ? true : undefined), { timeoutMs: 2000, intervalMs: 5 });
  if (!ok) throw new Error(`never true: ${check.toString()}`);
}

/** A running sandbox of 512 MiB and the envd client the guard uses. */
async function running(id: string): Promise<FakeEnvd> {
  await host.manager.create({ ...BASE, id, memoryMb: 512 });
  return host.guest.open.at(-1)!;
}

describe('memory guard', () => {
  it('is armed with the headroom from the start, and gone with the sandbox', async () => {
    await running('one');
    expect(host.runtime.memoryWatches.get('one')).toMatchObject({
      memoryMb: 512,
      headroomMb: memoryHeadroomMb(512, 1),
    });
    await host.manager.pause('one');
    await until(() => !host.runtime.memoryWatches.has('one'));
    await host.manager.resume('one');
    expect(host.runtime.memoryWatches.has('one')).toBe(true);
    await host.manager.destroy('one');
    expect(host.runtime.memoryWatches.size).toBe(0);
  });

  it('past the size: kills what envd chooses until the sandbox fits again, and reports each kill', async () => {
    const envd = await running('one');
    envd.oomVictims.push(
      { pid: 40, command: 'python3 big.py', rssBytes: 300 * MiB },
      { pid: 41, command: 'python3 other.py', rssBytes: 200 * MiB },
    );
    let inUse = 900 * MiB;
    host.runtime.memoryUse.set('one', { chargedBytes: inUse, inUseBytes: inUse });
    envd.onOomKill = ({ rssBytes }) => {
      inUse -= rssBytes;
      host.runtime.memoryUse.set('one', { chargedBytes: inUse, inUseBytes: inUse });
    };
    host.runtime.memoryWatches.get('one')!.onCross();
    await until(() => host.manager.get('one').oomKills === 2);
    const info = host.manager.get('one');
    expect(info.status).toBe('running');
    expect(info.lastOomKill).toMatchObject({ pid: 41, command: 'python3 other.py', memoryBytes: 200 * MiB });
    // Under the size again: nothing more is killed.
    expect(envd.oomVictims).toEqual([]);
  });

  it('over the size only by file cache: the cache is dropped, no process is killed', async () => {
    const envd = await running('one');
    envd.oomVictims.push({ pid: 40, command: 'python3', rssBytes: 100 * MiB });
    host.runtime.memoryUse.set('one', { chargedBytes: 600 * MiB, inUseBytes: 200 * MiB });
    host.runtime.memoryWatches.get('one')!.onCross();
    await until(() => host.runtime.cacheReclaims === 1);
    expect(host.manager.get('one').oomKills ?? 0).toBe(0);
    expect(envd.oomVictims).toHaveLength(1);
  });

  it('envd failing to answer is retried while the sandbox stays over its size', async () => {
    const envd = await running('one');
    host.faults.fail('envd.oomKill');
    host.runtime.memoryUse.set('one', { chargedBytes: 600 * MiB, inUseBytes: 600 * MiB });
    envd.oomVictims.push({ pid: 40, command: 'python3', rssBytes: 500 * MiB });
    envd.onOomKill = () => host.runtime.memoryUse.set('one', { chargedBytes: 0, inUseBytes: 0 });
    // The first call fails (injected); the guard tries again.
    host.runtime.memoryWatches.get('one')!.onCross();
    await until(() => host.manager.get('one').oomKills === 1);
  });
});
