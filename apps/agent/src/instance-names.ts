import { INSTANCE_PATTERN } from './config.js';

/**
 * The names an agent gives its host-wide resources: slot namespaces, the host ends of slot links,
 * firewall chains and the cgroup parent. Several agents share one machine (dev hosts, the fleet
 * tests) when each has its own instance tag: an agent lists, cleans and firewalls only what carries
 * its own names. The default instance keeps the names Wrenn always had.
 *
 * Interface names must fit Linux's 15 characters: `wrn` + a tag of up to 4 + `-` + a slot index of
 * up to 7 digits. No instance's prefix is a prefix of another's names (tags have no `-`, the default
 * prefix `wrn-h-` has one where tags start), so matching by prefix never reaches another instance.
 */
export class InstanceNames {
  readonly netnsPrefix: string;
  readonly hostInterfacePrefix: string;
  /** The cgroup under each controller's root that holds this instance's sandboxes. */
  readonly cgroupParent: string;
  private readonly chainPrefix: string;

  constructor(readonly instance?: string) {
    if (instance !== undefined && !INSTANCE_PATTERN.test(instance))
      throw new Error(`invalid instance tag ${JSON.stringify(instance)}`);
    this.netnsPrefix = instance ? `wrenn-${instance}-` : 'wrenn-';
    this.hostInterfacePrefix = instance ? `wrn${instance}-` : 'wrn-h-';
    this.cgroupParent = instance ? `wrenn-${instance}` : 'wrenn';
    this.chainPrefix = instance ? `WRENN-${instance.toUpperCase()}-` : 'WRENN-';
  }

  netnsName(slot: number): string {
    return `${this.netnsPrefix}${slot}`;
  }

  hostInterface(slot: number): string {
    return `${this.hostInterfacePrefix}${slot}`;
  }

  /** Whether a namespace is one of this instance's slots (`wrenn-3`, never `wrenn-dev1-3`). */
  ownsNetns(name: string): boolean {
    return name.startsWith(this.netnsPrefix) && /^\d+$/.test(name.slice(this.netnsPrefix.length));
  }

  ownsInterface(name: string): boolean {
    return (
      name.startsWith(this.hostInterfacePrefix) && /^\d+$/.test(name.slice(this.hostInterfacePrefix.length))
    );
  }

  chain(hook: 'INPUT' | 'FORWARD' | 'POSTROUTING'): string {
    return `${this.chainPrefix}${hook}`;
  }
}

/** What every instance's slot interfaces start with (the firewall keeps instances apart by it). */
export const ANY_INSTANCE_INTERFACE_PREFIX = 'wrn';

export const DEFAULT_INSTANCE = new InstanceNames();
