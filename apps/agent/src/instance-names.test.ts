import { describe, expect, it } from 'vitest';
import { InstanceNames } from './instance-names.js';
import { slotAddresses } from './network/addresses.js';

describe('instance names', () => {
  it('are the plain names for the default instance', () => {
    const names = new InstanceNames();
    expect([names.netnsName(3), names.hostInterface(3), names.chain('FORWARD'), names.cgroupParent]).toEqual([
      'wrenn-3',
      'wrn-h-3',
      'WRENN-FORWARD',
      'wrenn',
    ]);
    expect(slotAddresses(7, 0, names)).toMatchObject({ netnsName: 'wrenn-7', hostInterface: 'wrn-h-7' });
  });

  it('carry the tag of another instance, within 15-character interface names', () => {
    const names = new InstanceNames('dev1');
    expect([names.netnsName(3), names.hostInterface(3), names.chain('INPUT'), names.cgroupParent]).toEqual([
      'wrenn-dev1-3',
      'wrndev1-3',
      'WRENN-DEV1-INPUT',
      'wrenn-dev1',
    ]);
    // The largest slot index a /8 allows.
    expect(names.hostInterface(4_194_303).length).toBeLessThanOrEqual(15);
  });

  it('never claim another instance’s namespaces or interfaces', () => {
    const plain = new InstanceNames();
    const h = new InstanceNames('h');
    const h1 = new InstanceNames('h1');
    const all = [plain, h, h1];
    const netns = all.map((n) => n.netnsName(12));
    const ifaces = all.map((n) => n.hostInterface(12));
    all.forEach((names, i) => {
      expect(netns.filter((n) => names.ownsNetns(n))).toEqual([netns[i]]);
      expect(ifaces.filter((n) => names.ownsInterface(n))).toEqual([ifaces[i]]);
    });
    expect(plain.ownsNetns('wdev-h1')).toBe(false);
    expect(plain.ownsInterface('wrn-h-')).toBe(false);
  });

  it('refuse a tag that would not fit or would overlap', () => {
    for (const bad of ['', 'toolong', 'a-b', '1a', 'A'])
      expect(() => new InstanceNames(bad), bad).toThrow(/instance tag/);
  });
});
