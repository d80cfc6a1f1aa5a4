import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from './config.js';

describe('the agent settings', () => {
  it('listen on host:port, an IPv6 address in brackets', () => {
    expect(loadAgentConfig({})).toMatchObject({ listenHost: '127.0.0.1', listenPort: 7070 });
    expect(loadAgentConfig({ WRENN_AGENT_LISTEN: '[::1]:7071' })).toMatchObject({
      listenHost: '::1',
      listenPort: 7071,
    });
    expect(() => loadAgentConfig({ WRENN_AGENT_LISTEN: '::1:7071' })).toThrow(/WRENN_AGENT_LISTEN/);
  });

  it('take the egress deny list as IPv4 CIDRs, each checked', () => {
    expect(loadAgentConfig({}).egressDeny).toEqual([
      '10.0.0.0/8',
      '172.16.0.0/12',
      '192.168.0.0/16',
      '169.254.0.0/16',
      '100.64.0.0/10',
    ]);
    expect(loadAgentConfig({ WRENN_EGRESS_DENY: ' 10.1.2.3/8 ,, 192.0.2.0/24' }).egressDeny).toEqual([
      '10.0.0.0/8',
      '192.0.2.0/24',
    ]);
    expect(loadAgentConfig({ WRENN_EGRESS_DENY: '' }).egressDeny).toEqual([]);
    for (const bad of ['10.0.0.0', '10.0.0.0/8,fd00::/8', '10.0.0.0/8 -j ACCEPT', '999.0.0.0/8'])
      expect(() => loadAgentConfig({ WRENN_EGRESS_DENY: bad }), bad).toThrow(/WRENN_EGRESS_DENY/);
  });

  it('take the slot subnet as an IPv4 CIDR of /8 to /28', () => {
    expect(loadAgentConfig({}).slotSubnet).toEqual({ base: (10 << 24) + (12 << 16), prefix: 16 });
    for (const bad of ['10.12.0.0', '10.12.0.0/30', '10.0.0.0/4', 'fd00::/64'])
      expect(() => loadAgentConfig({ WRENN_SLOT_SUBNET: bad }), bad).toThrow(/WRENN_SLOT_SUBNET/);
  });
});

describe('the fleet settings', () => {
  it('default to no control plane, heartbeats every 30 s and a grace of 3', () => {
    expect(loadAgentConfig({})).toMatchObject({
      instance: undefined,
      fleet: { controlPlaneUrl: undefined, heartbeatSec: 30, heartbeatGrace: 3, advertise: undefined },
    });
  });

  it('take the control plane URL, token, advertised address and an instance tag', () => {
    const config = loadAgentConfig({
      WRENN_CONTROL_PLANE_URL: 'http://10.0.0.1:8080/',
      WRENN_REGISTRATION_TOKEN: 'tok',
      WRENN_ADVERTISE_ADDRESS: '10.0.0.2:7070',
      WRENN_HEARTBEAT_SEC: '1',
      WRENN_INSTANCE: 'dev1',
    });
    expect(config).toMatchObject({
      instance: 'dev1',
      fleet: {
        controlPlaneUrl: 'http://10.0.0.1:8080',
        registrationToken: 'tok',
        advertise: { host: '10.0.0.2', port: 7070 },
        heartbeatSec: 1,
      },
    });
    expect(() => loadAgentConfig({ WRENN_CONTROL_PLANE_URL: 'ftp://x' })).toThrow(/WRENN_CONTROL_PLANE_URL/);
    expect(() => loadAgentConfig({ WRENN_ADVERTISE_ADDRESS: 'nope' })).toThrow(/WRENN_ADVERTISE_ADDRESS/);
    expect(() => loadAgentConfig({ WRENN_INSTANCE: 'dev-1' })).toThrow(/WRENN_INSTANCE/);
  });

  it('take warm pool sizes as template=size pairs', () => {
    expect(loadAgentConfig({}).warmPool).toEqual([]);
    expect(loadAgentConfig({ WRENN_WARM_POOL: 'base=2, mysnap=1,' }).warmPool).toEqual([
      { template: 'base', size: 2 },
      { template: 'mysnap', size: 1 },
    ]);
    for (const bad of ['base', 'base=x', 'base=65', 'Base=1', 'base=1,base=2', 'base=-1'])
      expect(() => loadAgentConfig({ WRENN_WARM_POOL: bad })).toThrow(/WRENN_WARM_POOL/);
  });
});
