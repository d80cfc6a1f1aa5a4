import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { domainMatches, egressIsOpen, errorMessage, type EgressPolicy, type Logger } from '@wrenn/core';
import { buildAnswer, DNS_CLASS_IN, DNS_TYPE_A, parseQuery, Rcode, type DnsQuery } from './dns-message.js';
import type { NetworkSlot } from './addresses.js';

/** Names' addresses stay open at least this long, whatever the answer's TTL (a client connects after it resolves). */
export const MIN_OPEN_SEC = 30;
/** …and at most this long before the name must be asked again. */
export const MAX_OPEN_SEC = 3600;
/** Addresses open per slot at once; past this the ones closest to expiry go first. */
const MAX_OPEN_ADDRESSES = 1024;
/** Upstream lookups one slot may have in flight; queries past this are dropped (the client retries). */
const MAX_LOOKUPS_IN_FLIGHT = 32;

export const EGRESS_CHAIN = 'WRENN-EGRESS';

export interface EgressResolverConfig {
  /** The UDP port the agent answers a slot's DNS on, at the slot's host address. */
  dnsPort: number;
  /** `host:port` of the resolvers names are looked up with; empty: the host's (/etc/resolv.conf). */
  upstream: string[];
}

/** What the policy needs of the slot's rules: written by SlotNetwork with the rest of the netns's tables. */
export interface EgressRules {
  /** Rules of the filter table's WRENN-EGRESS chain (jumped to for everything the sandbox sends out). */
  filter: string[];
  /** Rules of the nat table's PREROUTING (the sandbox's DNS, to the agent). */
  nat: string[];
}

interface SlotState {
  slot: NetworkSlot;
  policy: EgressPolicy;
  /** Addresses a name of `allowDomains` resolved to, and when (ms) each stops being open. */
  open: Map<string, number>;
  socket?: dgram.Socket;
  expiry?: NodeJS.Timeout;
  lookups: number;
  /** The rule write waiting to start, which every change until it starts joins. */
  pending?: Promise<void>;
  last: Promise<void>;
}

/**
 * Per-slot egress: the policy's rules, and for a policy that allows names, the slot's DNS resolver.
 * The sandbox's DNS (UDP 53, to any address) is sent to a socket of the agent's at the slot's host
 * address; a name the policy allows is looked up with the host's resolver and exactly the addresses
 * answered are opened in the slot's rules, for the answer's TTL (within MIN/MAX_OPEN_SEC), before
 * the answer is sent. The sandbox's own DNS traffic never decides anything: a forged answer opens
 * nothing, and an address no answer named is refused. Everything lives in the slot's network
 * namespace and this process: it goes with the namespace (rules) and `release` (socket, timer).
 */
export class SlotEgress {
  private readonly slots = new Map<number, SlotState>();
  private readonly resolver: Resolver;

  constructor(
    private readonly config: EgressResolverConfig,
    /** Writes the slot's whole ruleset, these rules included (SlotNetwork). */
    private readonly writeRules: (slot: NetworkSlot) => Promise<void>,
    private readonly logger: Logger,
  ) {
    this.resolver = new Resolver({ timeout: 2000, tries: 2 });
    if (config.upstream.length > 0) this.resolver.setServers(config.upstream);
  }

  /** The slot's policy now (undefined: none of its own). */
  policyOf(slot: NetworkSlot): EgressPolicy | undefined {
    return this.slots.get(slot.index)?.policy;
  }

  /**
   * Makes `policy` the slot's (undefined: none) and writes its rules before answering. Addresses
   * opened for names stay open only while the allowed names are the same. `rewrite`: write the rules
   * even when neither the old nor the new policy has any (an adopted slot, whose rules an earlier
   * agent wrote).
   */
  async apply(slot: NetworkSlot, policy: EgressPolicy | undefined, rewrite = false): Promise<void> {
    let state = this.slots.get(slot.index);
    if (egressIsOpen(policy)) {
      if (state) {
        this.drop(state);
        this.slots.delete(slot.index);
      } else if (!rewrite) return;
      return this.writeRules(slot);
    }
    if (!state) {
      state = { slot, policy: policy!, open: new Map(), lookups: 0, last: Promise.resolve() };
      this.slots.set(slot.index, state);
    }
    if (state.policy.allowDomains.join() !== policy!.allowDomains.join()) state.open.clear();
    state.slot = slot;
    state.policy = policy!;
    if (policy!.allowDomains.length === 0) this.closeSocket(state);
    else await this.listen(state);
    await this.write(state);
  }

  /** The slot's filter and nat rules for its policy (empty when it has none). */
  rules(slot: NetworkSlot): EgressRules {
    const state = this.slots.get(slot.index);
    if (!state) return { filter: [], nat: [] };
    const { policy } = state;
    const chain = `-A ${EGRESS_CHAIN}`;
    const resolves = policy.allowDomains.length > 0;
    const dnsTarget = `${slot.hostIp}:${this.config.dnsPort}`;
    const refuse = (cidr: string) => [
      `${chain} -d ${cidr} -p tcp -j REJECT --reject-with tcp-reset`,
      `${chain} -d ${cidr} -j REJECT --reject-with icmp-admin-prohibited`,
    ];
    const filter = [
      // A policy change decides new connections; those already open carry on.
      `${chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN`,
      ...(resolves
        ? [
            `${chain} -d ${slot.hostIp}/32 -p udp --dport ${this.config.dnsPort} -j RETURN`,
            // DNS over TCP would reach a server the policy allows unasked: only our UDP answers.
            `${chain} -p tcp --dport 53 -j REJECT --reject-with tcp-reset`,
          ]
        : []),
      ...policy.allowCidrs.map((cidr) => `${chain} -d ${cidr} -j RETURN`),
      ...[...state.open.keys()].map((ip) => `${chain} -d ${ip}/32 -j RETURN`),
      ...policy.denyCidrs.flatMap(refuse),
    ];
    const nat = resolves
      ? [`-A PREROUTING -i gw0 -p udp --dport 53 -j DNAT --to-destination ${dnsTarget}`]
      : [];
    return { filter, nat };
  }

  /** The slot is going away (its namespace, and the rules in it, with it): socket and timer go now. */
  release(slot: NetworkSlot): void {
    const state = this.slots.get(slot.index);
    if (!state) return;
    this.drop(state);
    this.slots.delete(slot.index);
  }

  private drop(state: SlotState): void {
    this.closeSocket(state);
    clearTimeout(state.expiry);
    state.open.clear();
  }

  private closeSocket(state: SlotState): void {
    state.socket?.close();
    state.socket = undefined;
  }

  private async listen(state: SlotState): Promise<void> {
    if (state.socket) return;
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.config.dnsPort, state.slot.hostIp, () => {
        socket.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      socket.close();
      throw new Error(
        `the slot's DNS resolver cannot listen on ${state.slot.hostIp}:${this.config.dnsPort}: ${errorMessage(err)}`,
      );
    });
    socket.on('error', (err) => this.logger.warn({ err: errorMessage(err) }, 'slot DNS socket error'));
    socket.on('message', (msg, from) => {
      // Only this slot's sandbox (NATed to its slot address) is answered; the host's rules let any
      // slot send here.
      if (from.address !== state.slot.slotIp) return;
      const query = parseQuery(msg);
      if (!query || state.lookups >= MAX_LOOKUPS_IN_FLIGHT) return;
      state.lookups++;
      this.answer(state, query)
        .then((reply) => {
          if (state.socket === socket) socket.send(reply, from.port, from.address);
        })
        .catch((err: unknown) =>
          this.logger.warn({ err: errorMessage(err), name: query.name }, 'slot DNS answer failed'),
        )
        .finally(() => state.lookups--);
    });
    state.socket = socket;
  }

  private async answer(state: SlotState, query: DnsQuery): Promise<Buffer> {
    const { policy } = state;
    const allowed = policy.allowDomains.some((pattern) => domainMatches(pattern, query.name));
    // A policy that refuses everything not allowed answers no other name: a lookup is a message out.
    if (!allowed && policy.denyCidrs.includes('0.0.0.0/0')) return buildAnswer(query, Rcode.refused);
    if (query.qclass !== DNS_CLASS_IN) return buildAnswer(query, Rcode.notImp);
    // Sandboxes have IPv4 only: other types get an empty answer, not a forwarded one.
    if (query.type !== DNS_TYPE_A) return buildAnswer(query, Rcode.noError);
    let records: { address: string; ttl: number }[];
    try {
      records = await this.resolver.resolve4(query.name, { ttl: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND') return buildAnswer(query, Rcode.nxDomain);
      if (code === 'ENODATA') return buildAnswer(query, Rcode.noError);
      return buildAnswer(query, Rcode.servFail);
    }
    const ttl = Math.min(...records.map((r) => r.ttl), MAX_OPEN_SEC);
    if (allowed && records.length > 0) {
      const until = Date.now() + Math.max(ttl, MIN_OPEN_SEC) * 1000;
      let changed = false;
      for (const { address } of records) {
        if ((state.open.get(address) ?? 0) < until) {
          changed ||= !state.open.has(address);
          state.open.set(address, until);
        }
      }
      this.trim(state);
      // Open before the answer leaves: the sandbox connects the moment it has it.
      if (changed) await this.write(state);
      this.scheduleExpiry(state);
    }
    return buildAnswer(
      query,
      Rcode.noError,
      records.map((r) => r.address),
      ttl,
    );
  }

  private trim(state: SlotState): void {
    if (state.open.size <= MAX_OPEN_ADDRESSES) return;
    const byExpiry = [...state.open].sort((a, b) => a[1] - b[1]);
    for (const [ip] of byExpiry.slice(0, state.open.size - MAX_OPEN_ADDRESSES)) state.open.delete(ip);
  }

  private scheduleExpiry(state: SlotState): void {
    clearTimeout(state.expiry);
    if (state.open.size === 0) return;
    const next = Math.min(...state.open.values());
    state.expiry = setTimeout(
      () => {
        const now = Date.now();
        for (const [ip, until] of state.open) if (until <= now) state.open.delete(ip);
        if (this.slots.get(state.slot.index) !== state) return;
        this.write(state)
          .catch((err: unknown) =>
            this.logger.warn(
              { err: errorMessage(err), slot: state.slot.index },
              'closing expired addresses failed',
            ),
          )
          .finally(() => this.scheduleExpiry(state));
      },
      Math.max(0, next - Date.now()) + 10,
    );
    state.expiry.unref();
  }

  /** Writes the slot's rules; changes made before the write starts ride along with it. */
  private write(state: SlotState): Promise<void> {
    if (state.pending) return state.pending;
    const run = state.last.then(() => {
      state.pending = undefined;
      return this.writeRules(state.slot);
    });
    state.pending = run;
    state.last = run.catch(() => undefined);
    return run;
  }
}
