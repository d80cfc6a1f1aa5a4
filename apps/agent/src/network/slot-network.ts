import { exec, type Logger } from '@wrenn/core';
import { readdir } from 'node:fs/promises';
import {
  GATEWAY_INTERFACE,
  SANDBOX_GATEWAY_IP,
  SANDBOX_INTERFACE,
  SANDBOX_IP,
  SANDBOX_MAC,
  SANDBOX_PREFIX,
  SLOT_TRANSIT_INTERFACE,
  type NetworkSlot,
} from './addresses.js';
import type { InstanceNames } from '../instance-names.js';
import { EGRESS_CHAIN, SlotEgress, type EgressResolverConfig } from './slot-egress.js';
import type { EgressPolicy } from '@wrenn/core';

const TRANSIT_PREFIX = 30;
const SLOT_RTO_MIN = '20ms';

/**
 * Builds and tears down one slot's network namespace. The layout inside the netns:
 *   eth0 (169.254.0.21, taken over by gVisor's netstack) <-veth-> gw0 (169.254.0.22)
 *   veth0 (slot IP) <-veth-> wrn-h-N in the host namespace (host IP)
 * runsc adopts every interface that has an address when it starts, so gw0 and veth0 get theirs only
 * after the runtime is up (`activate`); the kernel then routes and NATs between them.
 */
export class SlotNetwork {
  private readonly egress: SlotEgress;

  constructor(
    private readonly names: InstanceNames,
    private readonly logger: Logger,
    egress: EgressResolverConfig = { dnsPort: 0, upstream: [] },
  ) {
    this.egress = new SlotEgress(egress, (slot) => this.writeRules(slot), logger);
  }

  /** Before the runtime starts: namespace, links, and the sandbox-side address for gVisor to adopt. */
  async prepare(slot: NetworkSlot): Promise<void> {
    const tempPeer = `wrn-n-${slot.index}`;
    await ip(['netns', 'add', slot.netnsName]);
    // The namespace's firewall needs no interface to exist (rules match names): it goes in beside the
    // links, so it is in place before the runtime starts and before any address routes, and is not
    // on the path after the runtime (`activate`).
    const links = async () => {
      // IPv6 stays off: the isolation rules are IPv4 rules.
      await inNetns(slot, [
        'sysctl',
        '-qw',
        'net.ipv6.conf.all.disable_ipv6=1',
        'net.ipv6.conf.default.disable_ipv6=1',
        'net.ipv4.ip_forward=1',
      ]);
      // Both ends of the transit link get fixed MACs and permanent neighbor entries: no ARP on it ever,
      // so a slot index reused right after a teardown cannot meet a stale or pending resolution.
      await ipBatch(undefined, [
        `link add ${slot.hostInterface} address ${slot.hostMac} type veth peer name ${tempPeer} address ${slot.slotMac} netns ${slot.netnsName}`,
        `addr add ${slot.hostIp}/${TRANSIT_PREFIX} dev ${slot.hostInterface}`,
        `neigh replace ${slot.slotIp} lladdr ${slot.slotMac} dev ${slot.hostInterface} nud permanent`,
        `link set ${slot.hostInterface} up`,
        // The link is a veth with sub-ms RTT: a segment that is lost on the way in should be resent
        // after ~20 ms, not after Linux's minimum RTO of 200 ms (docs/gvisor.md).
        `route replace ${slot.slotIp}/32 dev ${slot.hostInterface} src ${slot.hostIp} rto_min ${SLOT_RTO_MIN}`,
      ]);
      await ipBatch(slot.netnsName, [
        'link set lo up',
        `link set ${tempPeer} name ${SLOT_TRANSIT_INTERFACE}`,
        `link set ${SLOT_TRANSIT_INTERFACE} up`,
        `link add ${SANDBOX_INTERFACE} address ${SANDBOX_MAC} type veth peer name ${GATEWAY_INTERFACE}`,
        `addr add ${SANDBOX_IP}/${SANDBOX_PREFIX} dev ${SANDBOX_INTERFACE}`,
        `link set ${SANDBOX_INTERFACE} up`,
        `link set ${GATEWAY_INTERFACE} up`,
        `route add default via ${SANDBOX_GATEWAY_IP} dev ${SANDBOX_INTERFACE}`,
      ]);
    };
    const results = await Promise.allSettled([links(), this.writeRules(slot)]);
    // Both settle before a failure is rethrown: nothing runs in the namespace while it is released.
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  /**
   * After the runtime took eth0 over: the kernel side of the namespace routes and NATs. Idempotent
   * (`replace`): an agent that adopts a sandbox whose resume it did not see finish activates again.
   */
  async activate(slot: NetworkSlot): Promise<void> {
    await ipBatch(slot.netnsName, [
      `addr replace ${SANDBOX_GATEWAY_IP}/${SANDBOX_PREFIX} dev ${GATEWAY_INTERFACE}`,
      `addr replace ${slot.slotIp}/${TRANSIT_PREFIX} dev ${SLOT_TRANSIT_INTERFACE}`,
      `route replace default via ${slot.hostIp} dev ${SLOT_TRANSIT_INTERFACE}`,
      `neigh replace ${slot.hostIp} lladdr ${slot.hostMac} dev ${SLOT_TRANSIT_INTERFACE} nud permanent`,
      // We chose the sandbox's MAC, so the netns never has to ARP for it (nor wait on a busy netstack
      // to answer).
      `neigh replace ${SANDBOX_IP} lladdr ${SANDBOX_MAC} dev ${GATEWAY_INTERFACE} nud permanent`,
    ]);
  }

  /**
   * Makes `policy` the sandbox's egress policy (undefined: none of its own), in force before this
   * answers (docs/network.md). `rewrite`: write the rules even when there was and is no policy (an
   * adopted slot).
   */
  applyEgress(slot: NetworkSlot, policy: EgressPolicy | undefined, rewrite = false): Promise<void> {
    return this.egress.apply(slot, policy, rewrite);
  }

  /**
   * The namespace's own rules, written whole (both tables at once, atomically) whenever the egress
   * policy changes. Inbound: everything sent to the slot IP goes to the sandbox (envd and user servers
   * alike). Outbound: the sandbox appears as the slot IP, and passes its egress policy's chain. The
   * sandbox may not talk to the netns itself.
   */
  private async writeRules(slot: NetworkSlot): Promise<void> {
    const egress = this.egress.rules(slot);
    const rules = [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':INPUT ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':POSTROUTING ACCEPT [0:0]',
      `-A PREROUTING -i ${SLOT_TRANSIT_INTERFACE} -d ${slot.slotIp} -j DNAT --to-destination ${SANDBOX_IP}`,
      ...egress.nat,
      `-A POSTROUTING -o ${SLOT_TRANSIT_INTERFACE} -j MASQUERADE`,
      'COMMIT',
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      `:${EGRESS_CHAIN} - [0:0]`,
      `-A INPUT -i ${GATEWAY_INTERFACE} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
      `-A INPUT -i ${GATEWAY_INTERFACE} -j DROP`,
      // What arrives on eth0 was sent to the sandbox and is read by gVisor from the device. The kernel
      // must not forward it too: it would route it out gw0, back into eth0, until the TTL runs out,
      // handing gVisor dozens of copies and the sender an ICMP time-exceeded (EHOSTUNREACH).
      `-A FORWARD -i ${SANDBOX_INTERFACE} -j DROP`,
      `-A FORWARD -i ${GATEWAY_INTERFACE} -j ${EGRESS_CHAIN}`,
      ...egress.filter,
      'COMMIT',
      '',
    ].join('\n');
    await inNetns(slot, ['iptables-restore', '-w', '5'], rules);
  }

  /**
   * Removes the namespace; its interfaces (and with them the host's veth end) go with it. Idempotent.
   * The host end is deleted explicitly too, in case the namespace was already gone.
   */
  async release(slot: NetworkSlot): Promise<void> {
    this.egress.release(slot);
    await ip(['netns', 'del', slot.netnsName], true);
    await ip(['link', 'del', slot.hostInterface], true);
  }

  /**
   * Slot namespaces and host interfaces of this agent's instance that exist now (for cleanup at
   * start); another instance's are not listed.
   */
  static async listLeftovers(names: InstanceNames): Promise<{ netns: string[]; interfaces: string[] }> {
    const netns = (await readdir('/var/run/netns').catch(() => [] as string[])).filter((n) =>
      names.ownsNetns(n),
    );
    const { stdout } = await exec(['ip', '-o', 'link', 'show']);
    const interfaces = [...stdout.matchAll(/^\d+: ([^:@\s]+)/gm)]
      .map((m) => m[1] ?? '')
      .filter((n) => names.ownsInterface(n));
    return { netns, interfaces };
  }

  /** Every slot of this instance but the ones in `keep` (adopted sandboxes') goes. */
  async removeLeftovers(keep: ReadonlySet<number> = new Set()): Promise<void> {
    const listed = await SlotNetwork.listLeftovers(this.names);
    const kept = (name: string, nameOf: (index: number) => string) =>
      [...keep].some((index) => nameOf(index) === name);
    const netns = listed.netns.filter((n) => !kept(n, (i) => this.names.netnsName(i)));
    const interfaces = listed.interfaces.filter((n) => !kept(n, (i) => this.names.hostInterface(i)));
    for (const name of netns) await ip(['netns', 'del', name], true);
    for (const name of interfaces) await ip(['link', 'del', name], true);
    if (netns.length || interfaces.length)
      this.logger.warn({ netns, interfaces }, 'removed leftover network slots');
  }
}

function ip(args: string[], allowFailure = false) {
  return exec(['ip', ...args], { allowFailure, timeoutMs: 15_000 });
}

// One `ip` process for many changes: each spawn costs milliseconds on the create path.
function ipBatch(netns: string | undefined, lines: string[]) {
  const args = netns ? ['ip', '-n', netns, '-batch', '-'] : ['ip', '-batch', '-'];
  return exec(args, { input: lines.join('\n') + '\n', timeoutMs: 15_000 });
}

function inNetns(slot: NetworkSlot, argv: string[], input?: string) {
  return exec(['nsenter', `--net=${slot.netnsPath}`, ...argv], { input, timeoutMs: 15_000 });
}
