import { exec, type Logger } from '@wrenn/core';
import { HOST_INTERFACE_PREFIX } from './addresses.js';

const sandboxInterfaces = `${HOST_INTERFACE_PREFIX}+`;
const CHAINS = [
  { table: 'filter', chain: 'WRENN-INPUT', hook: 'INPUT' },
  { table: 'filter', chain: 'WRENN-FORWARD', hook: 'FORWARD' },
  { table: 'nat', chain: 'WRENN-POSTROUTING', hook: 'POSTROUTING' },
] as const;

/**
 * The host's side of sandbox isolation, as rules that match every slot's interface by prefix: nothing
 * here is per sandbox, so nothing here can leak when a sandbox goes away.
 * - a sandbox reaches no service of the host (INPUT from a slot interface: replies only);
 * - a sandbox reaches no other sandbox and nothing new is forwarded into a slot;
 * - egress to the denied ranges (the host's LAN, metadata addresses) is dropped; the rest is NATed out.
 */
export class HostFirewall {
  constructor(
    private readonly subnet: string,
    private readonly egressDeny: readonly string[],
    private readonly logger: Logger,
  ) {}

  async install(): Promise<void> {
    await exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await this.remove();
    const repliesOnly = ['-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'];
    const rules: string[][] = [
      ['filter', 'WRENN-INPUT', '-i', sandboxInterfaces, ...repliesOnly],
      ['filter', 'WRENN-INPUT', '-i', sandboxInterfaces, '-j', 'DROP'],
      ['filter', 'WRENN-FORWARD', '-o', sandboxInterfaces, ...repliesOnly],
      ['filter', 'WRENN-FORWARD', '-o', sandboxInterfaces, '-j', 'DROP'],
      ...this.egressDeny.map((cidr) => [
        'filter',
        'WRENN-FORWARD',
        '-i',
        sandboxInterfaces,
        '-d',
        cidr,
        '-j',
        'DROP',
      ]),
      ['filter', 'WRENN-FORWARD', '-i', sandboxInterfaces, '-j', 'ACCEPT'],
      ['nat', 'WRENN-POSTROUTING', '-s', this.subnet, '!', '-o', sandboxInterfaces, '-j', 'MASQUERADE'],
    ];
    for (const { table, chain, hook } of CHAINS) {
      await iptables(['-t', table, '-N', chain]);
      await iptables(['-t', table, '-I', hook, '1', '-j', chain]);
    }
    for (const [table, chain, ...rule] of rules) {
      await iptables(['-t', table!, '-A', chain!, ...rule]);
    }
    this.logger.info({ subnet: this.subnet, egressDeny: this.egressDeny }, 'host firewall rules installed');
  }

  /** Removes every rule and chain of Wrenn; safe to call when none exist. */
  async remove(): Promise<void> {
    for (const { table, chain, hook } of CHAINS) {
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
