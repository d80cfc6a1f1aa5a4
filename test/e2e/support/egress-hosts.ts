import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { exec } from '@wrenn/core';
import { buildAnswer, parseQuery, Rcode } from '@wrenn/agent';

/**
 * Hosts for egress tests, all on this machine: a network namespace `wrtest-eg` behind a veth whose
 * host end is 198.18.0.1/24 (benchmark space: outside the platform's deny list, so sandboxes route
 * to it through their slots like to any outside address), holding HOSTS' addresses, each serving
 * TCP on PORT with a line naming the address it was reached at.
 */
export const HOSTS = ['198.18.0.10', '198.18.0.11', '198.18.0.12'] as const;
export const PORT = 8080;
/** A host in a range the platform denies (10.0.0.0/8): no policy may open it. */
export const PRIVATE_HOST = '10.213.7.10';
const NETNS = 'wrtest-eg';
const HOST_END = 'wrtegh';
const NS_END = 'wrtegn';

export interface EgressHosts {
  stop(): Promise<void>;
}

const SERVER = `
const net = require('node:net');
net.createServer((s) => { s.end('hello from ' + s.localAddress.replace('::ffff:', '') + '\\n'); s.on('error', () => {}); })
  .listen(${PORT}, '0.0.0.0', () => console.log('ready'));
`;

export async function startEgressHosts(): Promise<EgressHosts> {
  await removeEgressHosts();
  await exec(['ip', 'netns', 'add', NETNS]);
  await exec(['ip', 'link', 'add', HOST_END, 'type', 'veth', 'peer', 'name', NS_END, 'netns', NETNS]);
  await exec(['ip', 'addr', 'add', '198.18.0.1/24', 'dev', HOST_END]);
  await exec(['ip', 'addr', 'add', '10.213.7.1/24', 'dev', HOST_END]);
  await exec(['ip', 'link', 'set', HOST_END, 'up']);
  await exec(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up']);
  for (const ip of [...HOSTS, PRIVATE_HOST])
    await exec(['ip', '-n', NETNS, 'addr', 'add', `${ip}/24`, 'dev', NS_END]);
  await exec(['ip', '-n', NETNS, 'link', 'set', NS_END, 'up']);
  const child: ChildProcess = spawn('ip', ['netns', 'exec', NETNS, process.execPath, '-e', SERVER], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the test hosts' server exited with ${code}`)));
  });
  return {
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      await removeEgressHosts();
    },
  };
}

async function removeEgressHosts(): Promise<void> {
  await exec(['ip', 'netns', 'del', NETNS], { allowFailure: true });
  await exec(['ip', 'link', 'del', HOST_END], { allowFailure: true });
}

/** A DNS server on loopback answering `names` (A records, TTL `ttl`), NXDOMAIN for the rest. */
export async function startTestDns(
  names: Record<string, string>,
  ttl = 60,
): Promise<{ address: string; asked: string[]; stop(): Promise<void> }> {
  const socket = dgram.createSocket('udp4');
  const asked: string[] = [];
  socket.on('message', (msg, from) => {
    const query = parseQuery(msg);
    if (!query) return;
    asked.push(query.name);
    const ip = names[query.name.toLowerCase()];
    const reply = ip ? buildAnswer(query, Rcode.noError, [ip], ttl) : buildAnswer(query, Rcode.nxDomain);
    socket.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    asked,
    stop: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/**
 * A Python probe run in the sandbox: `tcp <ip>` prints `open <line>` or `blocked <error>`;
 * `dns <name> <server>` prints the rcode and addresses; `forge <server> <name> <ip>` sends the
 * resolver a DNS *response* claiming the name is at the ip.
 */
export const PROBE = String.raw`
import socket, struct, sys, random
def q(name, flags=0x0100):
    h = struct.pack('>HHHHHH', random.randint(0, 65535), flags, 1, 0, 0, 0)
    return h + b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0' + struct.pack('>HH', 1, 1)
cmd = sys.argv[1]
if cmd == 'tcp':
    try:
        s = socket.create_connection((sys.argv[2], ${PORT}), timeout=4)
        print('open', s.recv(100).decode().strip())
    except Exception as e:
        print('blocked', type(e).__name__)
elif cmd == 'dns':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(4)
    s.sendto(q(sys.argv[2]), (sys.argv[3], 53))
    try:
        r = s.recv(512)
    except Exception as e:
        print('noanswer', type(e).__name__); sys.exit(0)
    rcode = r[3] & 15; an = struct.unpack('>H', r[6:8])[0]
    i = 12
    while r[i]: i += r[i] + 1
    i += 5; ips = []
    for _ in range(an):
        i += 2; t, c, ttl, n = struct.unpack('>HHIH', r[i:i+10]); i += 10
        if t == 1: ips.append('.'.join(str(b) for b in r[i:i+4]))
        i += n
    print('rcode', rcode, ' '.join(ips))
elif cmd == 'forge':
    m = q(sys.argv[3], 0x8180)
    m = m[:6] + struct.pack('>H', 1) + m[8:] + struct.pack('>HHHIH', 0xc00c, 1, 1, 3600, 4) + socket.inet_aton(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for port in (53, 49953):
        s.sendto(m, (sys.argv[2], port))
    print('sent')
`;
