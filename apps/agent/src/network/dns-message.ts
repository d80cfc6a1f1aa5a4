/**
 * The little of DNS's wire format (RFC 1035) the egress resolver needs: one question in, A records
 * out. Anything else in a query (answers, authority, EDNS options) is ignored.
 */

export const DNS_TYPE_A = 1;
export const DNS_CLASS_IN = 1;

export const Rcode = { noError: 0, formErr: 1, servFail: 2, nxDomain: 3, notImp: 4, refused: 5 } as const;

export interface DnsQuery {
  id: number;
  /** Recursion desired, echoed in the answer. */
  rd: boolean;
  name: string;
  type: number;
  qclass: number;
  /** The question section as sent, echoed in the answer. */
  question: Buffer;
}

/** A query with exactly one question; undefined for anything else (a response, another opcode, junk). */
export function parseQuery(msg: Buffer): DnsQuery | undefined {
  if (msg.length < 12) return undefined;
  const flags = msg.readUInt16BE(2);
  const isResponse = (flags & 0x8000) !== 0;
  const opcode = (flags >> 11) & 0xf;
  if (isResponse || opcode !== 0 || msg.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    const len = msg[at];
    if (len === undefined || len > 63) return undefined; // compression pointers have no place in a question
    at += 1;
    if (len === 0) break;
    if (at + len > msg.length) return undefined;
    labels.push(msg.subarray(at, at + len).toString('latin1'));
    at += len;
  }
  if (at + 4 > msg.length || labels.length === 0) return undefined;
  const name = labels.join('.');
  if (name.length > 253) return undefined;
  return {
    id: msg.readUInt16BE(0),
    rd: (flags & 0x0100) !== 0,
    name,
    type: msg.readUInt16BE(at),
    qclass: msg.readUInt16BE(at + 2),
    question: msg.subarray(12, at + 4),
  };
}

/** The answer to `query`: `rcode`, and A records (`ttl` seconds) for `addresses`. */
export function buildAnswer(
  query: DnsQuery,
  rcode: number,
  addresses: readonly string[] = [],
  ttl = 0,
): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.id, 0);
  // QR, RD as asked, RA, the rcode.
  header.writeUInt16BE(0x8000 | (query.rd ? 0x0100 : 0) | 0x0080 | (rcode & 0xf), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((ip) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the question's name
    rr.writeUInt16BE(DNS_TYPE_A, 2);
    rr.writeUInt16BE(DNS_CLASS_IN, 4);
    rr.writeUInt32BE(Math.max(0, Math.min(ttl, 0x7fffffff)), 6);
    rr.writeUInt16BE(4, 10);
    ip.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
    return rr;
  });
  return Buffer.concat([header, query.question, ...records]);
}

/** A query for `name` (tests, and the e2e's test DNS server's client side). */
export function buildQuery(id: number, name: string, type = DNS_TYPE_A): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(DNS_CLASS_IN, 3);
  return Buffer.concat([header, ...labels, tail]);
}

/** The rcode and A records of an answer (tests). */
export function parseAnswer(msg: Buffer): { id: number; rcode: number; addresses: string[]; ttls: number[] } {
  const id = msg.readUInt16BE(0);
  const rcode = msg.readUInt16BE(2) & 0xf;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let at = 12;
  const skipName = () => {
    for (;;) {
      const len = msg[at]!;
      if (len >= 0xc0) return void (at += 2);
      at += 1;
      if (len === 0) return;
      at += len;
    }
  };
  for (let i = 0; i < qd; i++) {
    skipName();
    at += 4;
  }
  const addresses: string[] = [];
  const ttls: number[] = [];
  for (let i = 0; i < an; i++) {
    skipName();
    const type = msg.readUInt16BE(at);
    const ttl = msg.readUInt32BE(at + 4);
    const len = msg.readUInt16BE(at + 8);
    if (type === DNS_TYPE_A && len === 4) {
      addresses.push([...msg.subarray(at + 10, at + 14)].join('.'));
      ttls.push(ttl);
    }
    at += 10 + len;
  }
  return { id, rcode, addresses, ttls };
}
