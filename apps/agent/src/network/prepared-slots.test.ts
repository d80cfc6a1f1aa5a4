import { afterEach, describe, expect, it } from 'vitest';
import { BASE, fakeHost, held, type FakeHost } from '../testing/fakes.js';

let host: FakeHost;
afterEach(() => host.cleanup());

/** A host keeping `size` slots built ahead, with the warm pool's quiet period off. */
async function hostWith(size: number): Promise<FakeHost> {
  host = await fakeHost(undefined, { preparedSlots: size });
  host.manager.pool.quietMs = 0;
  return host;
}

async function fill(h: FakeHost): Promise<void> {
  for (let i = 0; i < h.manager.preparedSlots.size; i++) await h.manager.preparedSlots.refillOnce();
}

describe('prepared network slots', () => {
  it('are built one refill at a time up to their size, and a start takes one without building it', async () => {
    const h = await hostWith(2);
    await h.manager.preparedSlots.refillOnce();
    expect(held(h).netns).toEqual([1]);
    await h.manager.preparedSlots.refillOnce();
    await h.manager.preparedSlots.refillOnce();
    expect(held(h).netns).toEqual([1, 2]);
    // The fake network refuses to build a namespace that exists: the start did not build slot 1 again.
    const info = await h.manager.create({ ...BASE, id: 'one' });
    expect(info.envdAddress).toBe('10.12.0.6:49983');
    expect(h.manager.preparedSlots.readyCount).toBe(1);
    expect(held(h)).toMatchObject({ netns: [1, 2], slots: 2 });
    await h.manager.destroy('one');
    expect(held(h)).toMatchObject({ netns: [2], slots: 1, runtimes: [] });
  });

  it('a start with none ready builds its own; a failed start gives its taken slot back', async () => {
    const h = await hostWith(1);
    await expect(h.manager.create({ ...BASE, id: 'one' })).resolves.toMatchObject({ status: 'running' });
    await fill(h);
    h.faults.fail('runtime.create');
    await expect(h.manager.create({ ...BASE, id: 'two' })).rejects.toThrow(/injected failure/);
    expect(held(h)).toMatchObject({ netns: [1], slots: 1, runtimes: ['one'] });
  });

  it('wait while a create runs or just ran', async () => {
    const h = await hostWith(2);
    h.manager.pool.quietMs = 60_000;
    await h.manager.create({ ...BASE, id: 'one' });
    await h.manager.preparedSlots.refillOnce();
    expect(held(h).netns).toEqual([1]);
  });

  it('a slot that fails to build is removed and its index freed', async () => {
    const h = await hostWith(1);
    h.faults.fail('network.prepare');
    await h.manager.preparedSlots.refillOnce();
    expect(held(h)).toMatchObject({ netns: [], slots: 0 });
    expect(h.manager.preparedSlots.readyCount).toBe(0);
    await h.manager.preparedSlots.refillOnce();
    expect(held(h)).toMatchObject({ netns: [1], slots: 1 });
  });

  it('stop removes the ready ones and one being built, and builds no more', async () => {
    const h = await hostWith(2);
    await h.manager.preparedSlots.refillOnce();
    const inFlight = h.manager.preparedSlots.refillOnce();
    await h.manager.preparedSlots.stop();
    await inFlight;
    expect(held(h)).toMatchObject({ netns: [], slots: 0 });
    await h.manager.preparedSlots.refillOnce();
    expect(held(h)).toMatchObject({ netns: [], slots: 0 });
  });

  it('build none when every index is taken', async () => {
    const h = await hostWith(2);
    for (let i = 0; i < 8; i++) h.slots.reserve(i + 1);
    await h.manager.preparedSlots.refillOnce();
    expect(held(h).netns).toEqual([]);
  });
});
