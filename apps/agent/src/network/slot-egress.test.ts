import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger, type EgressPolicy } from '@wrenn/core';
import type { NetworkSlot } from './addresses.js';
import { buildAnswer, buildQuery, parseAnswer, parseQuery, Rcode } from './dns-message.js';
import { SlotEgress } from './slot-egress.js';

// The slot's DNS for allowed names, in-process on loopback: the "slot" is 127.0.0.1 on both ends, the
// upstream a DNS server of the test's own. The rules' effect on packets: test/e2e/egress.e2e.test.ts.
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0)) await fn();
});

async function udp(): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => socket.close(() => r())));
  return socket;
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function setup(policy: EgressPolicy) {
  const upstream = await udp();
  const asked: string[] = [];
  upstream.on('message', (msg, from) => {
    const q = parseQuery(msg)!;
    asked.push(q.name);
    const ip = { 'ok.test': '198.18.0.10', 'a.svc.test': '198.18.0.11' }[q.name];
    upstream.send(
      ip ? buildAnswer(q, Rcode.noError, [ip], 5) : buildAnswer(q, Rcode.nxDomain),
      from.port,
      from.address,
    );
  });
  const dnsPort = await freeUdpPort();
  const slot = { index: 1, hostIp: '127.0.0.1', slotIp: '127.0.0.1' } as NetworkSlot;
  /** The rules as each write saw them. */
  const writes: string[][] = [];
  const egress: SlotEgress = new SlotEgress(
    { dnsPort, upstream: [`127.0.0.1:${upstream.address().port}`] },
    (s) => {
      writes.push(egress.rules(s).filter);
      return Promise.resolve();
    },
    silentLogger(),
  );
  cleanups.push(() => egress.release(slot));
  await egress.apply(slot, policy);
  const client = await udp();
  const ask = async (name: string) => {
    const reply = new Promise<Buffer>((r) => client.once('message', r));
    client.send(buildQuery(7, name), dnsPort, '127.0.0.1');
    return parseAnswer(await reply);
  };
  return { egress, slot, writes, ask, asked, client, dnsPort };
}

describe('the slot DNS of an egress policy', () => {
  it('opens exactly the answered addresses, before it answers; refuses other names under deny all', async () => {
    const { writes, ask, asked } = await setup({
      allowCidrs: [],
      allowDomains: ['ok.test', '*.svc.test'],
      denyCidrs: ['0.0.0.0/0'],
    });
    expect(writes.at(-1)!.join('\n')).not.toContain('198.18.0.10');
    expect(await ask('ok.test')).toMatchObject({ id: 7, rcode: Rcode.noError, addresses: ['198.18.0.10'] });
    // The write that opened it came before the answer arrived.
    expect(writes.at(-1)!.join('\n')).toContain('-d 198.18.0.10/32 -j RETURN');
    expect(await ask('a.svc.test')).toMatchObject({ addresses: ['198.18.0.11'] });
    expect(await ask('other.test')).toMatchObject({ rcode: Rcode.refused, addresses: [] });
    expect(await ask('svc.test')).toMatchObject({ rcode: Rcode.refused });
    expect(asked).toEqual(['ok.test', 'a.svc.test']);
    // Deny rules come after every allow.
    const rules = writes.at(-1)!;
    const firstReject = rules.findIndex((r) => r.includes('REJECT') && r.includes('0.0.0.0/0'));
    expect(rules.findIndex((r) => r.includes('198.18.0.11'))).toBeLessThan(firstReject);
  });

  it('a forged response opens nothing; a policy change closes what names opened', async () => {
    const { egress, slot, writes, ask, client, dnsPort } = await setup({
      allowCidrs: [],
      allowDomains: ['ok.test'],
      denyCidrs: ['0.0.0.0/0'],
    });
    const forged = buildAnswer(parseQuery(buildQuery(9, 'ok.test'))!, Rcode.noError, ['203.0.113.9'], 3600);
    client.send(forged, dnsPort, '127.0.0.1');
    await ask('ok.test');
    expect(writes.flat().join('\n')).not.toContain('203.0.113.9');
    await egress.apply(slot, { allowCidrs: [], allowDomains: ['other.test'], denyCidrs: ['0.0.0.0/0'] });
    expect(writes.at(-1)!.join('\n')).not.toContain('198.18.0.10');
    // No policy of its own: no rules at all.
    await egress.apply(slot, undefined);
    expect(egress.rules(slot)).toEqual({ filter: [], nat: [] });
  });
});
