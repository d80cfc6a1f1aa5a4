import http from 'node:http';
import { ALL_TRAFFIC, Sandbox, type SandboxOpts } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';
import { HOSTS, PROBE, startEgressHosts, startTestDns, type EgressHosts } from './support/egress-hosts.js';
import { eventually } from './support/host-state.js';

// E2B's network settings through the official SDK against Wrenn (docs/network.md): egress
// (allowInternetAccess, allowOut/denyOut with names, updateNetwork, kept across pause) against test
// hosts in a namespace of this machine, and private traffic (allowPublicTraffic: false).
const [A, B] = HOSTS;

let agent: AgentProcess;
let plane: ControlPlane;
let hosts: EgressHosts;
let dns: Awaited<ReturnType<typeof startTestDns>>;

beforeAll(async () => {
  hosts = await startEgressHosts();
  dns = await startTestDns({ 'ok.test': A });
  agent = await startAgentProcess({ WRENN_EGRESS_RESOLVER: dns.address });
  plane = await startControlPlane(agent.url);
  const { url } = plane.server;
  process.env.E2B_API_URL = url;
  process.env.E2B_SANDBOX_URL = url;
  process.env.E2B_API_KEY = await teamApiKey(url, `e2b-net-${Date.now()}@example.com`);
});

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
  await dns?.stop();
  await hosts?.stop();
});

async function withSdkSandbox(opts: SandboxOpts, fn: (sbx: Sandbox) => Promise<void>) {
  const sbx = await Sandbox.create(opts);
  try {
    await sbx.files.write('/tmp/probe.py', PROBE);
    await fn(sbx);
  } finally {
    await sbx.kill();
  }
}

async function probe(sbx: Sandbox, ...args: string[]): Promise<string> {
  return (await sbx.commands.run(`python3 /tmp/probe.py ${args.join(' ')}`)).stdout.trim();
}

async function expectReach(sbx: Sandbox, expected: Record<string, boolean>): Promise<void> {
  const seen: Record<string, boolean> = {};
  for (const ip of Object.keys(expected)) {
    const out = await probe(sbx, 'tcp', ip);
    if (out !== `open hello from ${ip}`) expect(out).toMatch(/^blocked /);
    seen[ip] = out.startsWith('open');
  }
  expect(seen).toEqual(expected);
}

/** A request through the server by Host (as a wildcard DNS name would arrive). */
function viaProxy(host: string, headers: Record<string, string> = {}) {
  const { port } = new URL(plane.server.url);
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', headers: { ...headers, host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('E2B network settings through the e2b SDK', () => {
  it('allowInternetAccess: false blocks egress; the default lets it through', async () => {
    await withSdkSandbox({}, (sbx) => expectReach(sbx, { [A]: true }));
    await withSdkSandbox({ allowInternetAccess: false }, (sbx) =>
      expectReach(sbx, { [A]: false, [B]: false }),
    );
  });

  it('allowOut with a name and denyOut all, then updateNetwork both ways, kept across pause', async () => {
    await withSdkSandbox({ network: { allowOut: ['ok.test'], denyOut: [ALL_TRAFFIC] } }, async (sbx) => {
      expect(await probe(sbx, 'dns', 'ok.test', B)).toBe(`rcode 0 ${A}`);
      await expectReach(sbx, { [A]: true, [B]: false });
      await sbx.updateNetwork({ allowOut: [B], denyOut: [ALL_TRAFFIC] });
      await expectReach(sbx, { [A]: false, [B]: true });
      await sbx.pause();
      const again = await Sandbox.connect(sbx.sandboxId);
      await expectReach(again, { [A]: false, [B]: true });
      // Omitted fields are cleared: everything open again.
      await again.updateNetwork({});
      await expectReach(again, { [A]: true, [B]: true });
      await again.updateNetwork({ allowInternetAccess: false });
      await expectReach(again, { [A]: false });
    });
  });

  it('allowPublicTraffic: false — the proxy wants the traffic token, strips it, and the SDK still works', async () => {
    await withSdkSandbox({ network: { allowPublicTraffic: false } }, async (sbx) => {
      expect(sbx.trafficAccessToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      // A server that answers with the headers it got.
      await sbx.files.write(
        '/tmp/echo.py',
        `import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()
`,
      );
      await sbx.commands.run('python3 /tmp/echo.py', { background: true });
      const host = sbx.getHost(8000);
      const token = { 'e2b-traffic-access-token': sbx.trafficAccessToken! };
      await eventually(async () => expect((await viaProxy(host, token)).status).toBe(200), 15_000);
      const seen = JSON.parse((await viaProxy(host, token)).body) as Record<string, string>;
      expect(seen).not.toHaveProperty('e2b-traffic-access-token');
      const attempts: Record<string, string>[] = [{}, { 'e2b-traffic-access-token': 'forged' }];
      for (const headers of attempts) {
        const refused = await viaProxy(host, headers);
        expect(refused.status).toBe(403);
        const error = JSON.parse(refused.body) as { code: number; message: string };
        expect(error.code).toBe(403);
        expect(error.message).toMatch(/traffic access token/);
      }
      // envd (the SDK's own calls) is guarded by its own token, not this one.
      expect((await sbx.commands.run('echo ok')).stdout).toBe('ok\n');
      // Connect answers the same token.
      const again = await Sandbox.connect(sbx.sandboxId);
      expect(again.trafficAccessToken).toBe(sbx.trafficAccessToken);
    });
    // A public sandbox's port needs none, and its answer carries none.
    await withSdkSandbox({}, async (sbx) => {
      expect(sbx.trafficAccessToken).toBeUndefined();
      await sbx.commands.run('cd /tmp && python3 -m http.server 8000 >/dev/null 2>&1', { background: true });
      await eventually(async () => expect((await viaProxy(sbx.getHost(8000))).status).toBe(200), 15_000);
    });
  });
});
