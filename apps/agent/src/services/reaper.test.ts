import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BASE, fakeHost, held, NOTHING_HELD, type FakeHost } from '../testing/fakes.js';
import { expired, pauseExpired } from './reaper.js';

let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
});
afterEach(() => host.cleanup());

describe('the inactivity reaper', () => {
  it('pauses a sandbox idle past its timeout, saying why', async () => {
    await host.manager.create({ ...BASE, id: 'one', timeoutSec: 5 });
    await host.manager.create({ ...BASE, id: 'never', timeoutSec: 0 });
    const { ctx } = host.manager;
    expect(expired(ctx, Date.now() + 4000)).toEqual([]);
    ctx.registry.find('one').lastActive -= 5000;
    ctx.registry.find('never').lastActive -= 5000;
    await pauseExpired(ctx);
    expect(host.manager.get('one')).toMatchObject({
      status: 'paused',
      autoPaused: true,
      statusReason: 'paused after 5 s without activity',
    });
    expect(host.manager.get('never').status).toBe('running');
  });

  it('leaves a sandbox alone while a call is in flight', async () => {
    await host.manager.create({ ...BASE, id: 'one', timeoutSec: 1 });
    const { done } = host.manager.connection('one');
    host.manager.ctx.registry.find('one').lastActive -= 5000;
    await pauseExpired(host.manager.ctx);
    expect(host.manager.get('one').status).toBe('running');
    done();
  });

  it('destroys an expired sandbox that cannot be paused', async () => {
    await host.manager.create({ ...BASE, id: 'one', timeoutSec: 1 });
    host.manager.ctx.registry.find('one').lastActive -= 5000;
    host.faults.fail('runtime.checkpoint');
    await pauseExpired(host.manager.ctx);
    expect(host.manager.list()).toEqual([]);
    expect(held(host)).toEqual(NOTHING_HELD);
  });
});
