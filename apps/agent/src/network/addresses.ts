import { intToIpv4 } from '../config.js';
import { DEFAULT_INSTANCE, type InstanceNames } from '../instance-names.js';

// Every sandbox sees the same inside address, so a checkpoint taken in one slot restores in any other.
export const SANDBOX_IP = '169.254.0.21';
export const SANDBOX_GATEWAY_IP = '169.254.0.22';
export const SANDBOX_PREFIX = 30;
// A fixed MAC for the same reason: netstack's state includes its NIC's address.
export const SANDBOX_MAC = '02:77:72:6e:00:15';

export interface NetworkSlot {
  index: number;
  netnsName: string;
  netnsPath: string;
  /** veth end in the host's namespace. */
  hostInterface: string;
  /** Address of hostInterface. */
  hostIp: string;
  /** Address of the slot's end of the transit link; the host reaches the sandbox here. */
  slotIp: string;
  /** MACs of both ends of the transit link, fixed per slot so each side knows the other's without ARP. */
  hostMac: string;
  slotMac: string;
}

// Inside the netns: the transit link and the veth pair whose `eth0` end gVisor takes over.
export const SLOT_TRANSIT_INTERFACE = 'veth0';
export const SANDBOX_INTERFACE = 'eth0';
export const GATEWAY_INTERFACE = 'gw0';

/** Slot N owns the /30 at subnet base + 4N: .1 on the host side, .2 on the slot side. */
export function slotAddresses(
  index: number,
  subnetBase: number,
  names: InstanceNames = DEFAULT_INSTANCE,
): NetworkSlot {
  const block = subnetBase + index * 4;
  const netnsName = names.netnsName(index);
  return {
    index,
    netnsName,
    netnsPath: `/var/run/netns/${netnsName}`,
    hostInterface: names.hostInterface(index),
    hostIp: intToIpv4(block + 1),
    slotIp: intToIpv4(block + 2),
    hostMac: slotMac(0x68, index),
    slotMac: slotMac(0x73, index),
  };
}

// Locally administered (02:…), "wn", a side tag, then the slot index in 24 bits.
function slotMac(side: number, index: number): string {
  const bytes = [0x02, 0x77, side, (index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Number of usable slots in a subnet (slot 0 is left unused so no address ends in .0.0). */
export function slotCapacity(prefix: number): number {
  return 2 ** (32 - prefix) / 4 - 1;
}
