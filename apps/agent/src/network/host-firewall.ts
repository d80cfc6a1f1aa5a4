import { exec, type Logger } from '@wrenn/core';
import { ANY_INSTANCE_INTERFACE_PREFIX, type InstanceNames } from '../instance-names.js';

// Named so a guard left by an agent that died mid-install shows in the rule listings (and goes).
const GUARD = ['-m', 'comment', '--comment', 'WRENN-GUARD', '-j', 'DROP'];

const HOOKS = [
  { table: 'filter', hook: 'INPUT' },
  { table: 'filter', hook: 'FORWARD' },
  { table: 'nat', hook: 'POSTROUTING' },
] as const;

/**
 * The host's side of sandbox isolation, as rules that match every slot's interface by prefix: nothing
 * here is per sandbox, so nothing here can leak when a sandbox goes away.
 * - a sandbox reaches no service of the host (INPUT from a slot interface: replies only), but the
 *   agent's DNS for egress policies (slot-egress.ts);
 * - a sandbox reaches no other sandbox and nothing new is forwarded into a slot;
 * - egress to the denied ranges (the host's LAN, metadata addresses) is dropped; the rest is NATed out.
 * Each agent instance has chains of its own and matches only its own interfaces; a sandbox never
 * reaches another instance's slots either, whichever instance's chain the kernel walks first.
 */
export class HostFirewall {
  private readonly chains: { table: 'filter' | 'nat'; chain: string; hook: string }[];
  private readonly sandboxInterfaces: string;

  constructor(
    names: InstanceNames,
    private readonly subnet: string,
    private readonly egressDeny: readonly string[],
    private readonly logger: Logger,
    /** The UDP port slots' DNS is answered on (slot-egress.ts), at their host addresses. */
    private readonly slotDnsPort?: number,
  ) {
    this.chains = HOOKS.map(({ table, hook }) => ({ table, hook, chain: names.chain(hook) }));
    this.sandboxInterfaces = `${names.hostInterfacePrefix}+`;
  }

  async install(): Promise<void> {
    await exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // Sandboxes adopted from a previous agent run throughout: while the chains are rebuilt, their
    // traffic is dropped, never let through unfiltered. The guards sit below the new jumps (inserted
    // first at position 1) and go once the chains decide every packet of a slot.
    await this.removeGuards();
    for (const [table, hook, ...match] of this.guards)
      await iptables(['-t', table!, '-I', hook!, '1', ...match, ...GUARD]);
    try {
      await this.build();
    } finally {
      await this.removeGuards();
    }
    this.logger.info({ subnet: this.subnet, egressDeny: this.egressDeny }, 'host firewall rules installed');
  }

  private get guards(): string[][] {
    const slots = this.sandboxInterfaces;
    return [
      ['filter', 'INPUT', '-i', slots],
      ['filter', 'FORWARD', '-i', slots],
      ['filter', 'FORWARD', '-o', slots],
    ];
  }

  private async removeGuards(): Promise<void> {
    for (const [table, hook, ...match] of this.guards)
      while ((await iptables(['-t', table!, '-D', hook!, ...match, ...GUARD], true)).exitCode === 0);
  }

  private async build(): Promise<void> {
    await this.removeChains();
    const repliesOnly = ['-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'];
    const slots = this.sandboxInterfaces;
    const [input, forward, postrouting] = this.chains.map((c) => c.chain) as [string, string, string];
    const rules: string[][] = [
      ['filter', input, '-i', slots, ...repliesOnly],
      // The one host service a slot reaches: the agent's DNS for its egress policy, on the slot host
      // addresses only (the socket answers its own slot's sandbox alone).
      ...(this.slotDnsPort
        ? [
            [
              'filter',
              input,
              '-i',
              slots,
              '-d',
              this.subnet,
              '-p',
              'udp',
              '--dport',
              String(this.slotDnsPort),
              '-j',
              'ACCEPT',
            ],
          ]
        : []),
      ['filter', input, '-i', slots, '-j', 'DROP'],
      ['filter', forward, '-o', slots, ...repliesOnly],
      ['filter', forward, '-o', slots, '-j', 'DROP'],
      ...this.egressDeny.map((cidr) => ['filter', forward, '-i', slots, '-d', cidr, '-j', 'DROP']),
      // Another agent instance's slots on this host: its own chain would refuse this, but ours may be
      // walked first, and our ACCEPT below would win.
      ['filter', forward, '-i', slots, '-o', `${ANY_INSTANCE_INTERFACE_PREFIX}+`, '-j', 'DROP'],
      ['filter', forward, '-i', slots, '-j', 'ACCEPT'],
      ['nat', postrouting, '-s', this.subnet, '!', '-o', slots, '-j', 'MASQUERADE'],
    ];
    for (const { table, chain, hook } of this.chains) {
      await iptables(['-t', table, '-N', chain]);
      await iptables(['-t', table, '-I', hook, '1', '-j', chain]);
    }
    for (const [table, chain, ...rule] of rules) {
      await iptables(['-t', table!, '-A', chain!, ...rule]);
    }
  }

  /** Removes every rule and chain of this instance; safe to call when none exist. */
  async remove(): Promise<void> {
    await this.removeChains();
    await this.removeGuards();
  }

  private async removeChains(): Promise<void> {
    for (const { table, chain, hook } of this.chains) {
      // A crashed predecessor may have left the jump more than once.
      while ((await iptables(['-t', table, '-D', hook, '-j', chain], true)).exitCode === 0);
      await iptables(['-t', table, '-F', chain], true);
      await iptables(['-t', table, '-X', chain], true);
    }
  }
}

function iptables(args: string[], allowFailure = false) {
  return exec(['iptables', '-w', '5', ...args], { allowFailure, timeoutMs: 15_000 });
}
