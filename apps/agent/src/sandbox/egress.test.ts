import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EgressPolicy } from '@wrenn/core';
import { BASE, fakeHost, type FakeHost } from '../testing/fakes.js';
import { ipv4ToInt } from '../config.js';
import { sandboxPaths } from '../storage/layout.js';
import { readSandboxState } from './record.js';

// The lifecycle's side of egress policies (the rules themselves: test/e2e/egress.e2e.test.ts): every
// slot a sandbox gets has its policy, whatever path gave it the slot.
let host: FakeHost;
beforeEach(async () => {
  host = await fakeHost();
  host.manager.pool.quietMs = 0;
});
afterEach(() => host.cleanup());

const CLOSED: EgressPolicy = {
  allowCidrs: ['1.2.3.4/32'],
  allowDomains: ['ok.test'],
  denyCidrs: ['0.0.0.0/0'],
};
const OPEN: EgressPolicy = { allowCidrs: [], allowDomains: [], denyCidrs: [] };

/** The policy last applied to the slot the sandbox runs in (slot N's address is base + 4N + 2). */
const policyNow = (id: string) => {
  const ip = host.manager.get(id).envdAddress.split(':')[0]!;
  const slot = (ipv4ToInt(ip) - host.deps.config.slotSubnet.base - 2) / 4;
  expect(host.network.prepared.has(slot)).toBe(true);
  return host.network.egress.get(slot);
};
const stored = async (id: string) => (await readSandboxState(sandboxPaths(host.layout, id)))?.egress;

describe('egress policy through the lifecycle', () => {
  it('a create applies it before the runtime starts, and records it', async () => {
    const held = host.faults.hold('runtime.create');
    const made = host.manager.create({ ...BASE, id: 'closed1', egress: CLOSED });
    await held.reached;
    // The runtime is being started: the slot's policy is already the sandbox's.
    expect([...host.network.egress.values()]).toEqual([CLOSED]);
    held.release();
    await made;
    expect(policyNow('closed1')).toEqual(CLOSED);
    expect(await stored('closed1')).toEqual(CLOSED);
  });

  it('a sandbox claimed from the warm pool gets the request’s policy', async () => {
    await host.manager.setWarmPool('base', 1);
    await host.manager.pool.refillOnce();
    const info = await host.manager.create({ ...BASE, id: 'claimed1', egress: CLOSED });
    expect(host.manager.listWarmPools()[0]).toMatchObject({ claims: 1 });
    expect(policyNow(info.id)).toEqual(CLOSED);
  });

  it('an update applies to a running sandbox, is kept while paused, and a resume names the newest', async () => {
    await host.manager.create({ ...BASE, id: 'upd1' });
    await host.manager.updateNetwork('upd1', CLOSED);
    expect(policyNow('upd1')).toEqual(CLOSED);
    await host.manager.pause('upd1');
    await host.manager.updateNetwork('upd1', OPEN);
    expect(await stored('upd1')).toEqual(OPEN);
    await host.manager.resume('upd1');
    expect(policyNow('upd1')).toEqual(OPEN);
    await host.manager.pause('upd1');
    await host.manager.resume('upd1', { egress: CLOSED });
    expect(policyNow('upd1')).toEqual(CLOSED);
  });

  it('a policy that cannot be applied leaves the old one and fails the call', async () => {
    await host.manager.create({ ...BASE, id: 'keep1', egress: CLOSED });
    host.faults.fail('network.egress');
    await expect(host.manager.updateNetwork('keep1', OPEN)).rejects.toThrow(/injected failure/);
    expect(policyNow('keep1')).toEqual(CLOSED);
    expect(await stored('keep1')).toEqual(CLOSED);
  });
});
