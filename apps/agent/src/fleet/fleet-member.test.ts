import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '@wrenn/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../config.js';
import { hostCredentials, isLoopback } from './fleet-member.js';

describe('an agent’s credentials at start', () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'wrenn-member-'));
  });
  afterEach(() => rm(dataDir, { recursive: true, force: true }));

  it('are none on loopback without a control plane (h2c, as before)', async () => {
    for (const listen of ['127.0.0.1:7070', '[::1]:7070', 'localhost:0']) {
      const config = loadAgentConfig({ WRENN_DIR: dataDir, WRENN_AGENT_LISTEN: listen });
      expect(await hostCredentials(config, silentLogger())).toBeUndefined();
    }
  });

  it('are required beyond loopback: the agent refuses to start, saying to register it', async () => {
    for (const listen of ['0.0.0.0:7070', '10.0.0.5:7070', '[::]:7070']) {
      const config = loadAgentConfig({ WRENN_DIR: dataDir, WRENN_AGENT_LISTEN: listen });
      await expect(hostCredentials(config, silentLogger()), listen).rejects.toThrow(
        /refusing to listen on .* without credentials.*Register this host/,
      );
    }
  });

  it('cannot be registered for an address the control plane could not dial', async () => {
    const base = {
      WRENN_DIR: dataDir,
      WRENN_CONTROL_PLANE_URL: 'http://127.0.0.1:9',
      WRENN_REGISTRATION_TOKEN: 't',
    };
    await expect(
      hostCredentials(loadAgentConfig({ ...base, WRENN_AGENT_LISTEN: '127.0.0.1:0' }), silentLogger()),
    ).rejects.toThrow(/cannot register with address 127\.0\.0\.1:0.*WRENN_ADVERTISE_ADDRESS/);
    await expect(
      hostCredentials(loadAgentConfig({ ...base, WRENN_AGENT_LISTEN: '0.0.0.0:7070' }), silentLogger()),
    ).rejects.toThrow(/cannot register with address 0\.0\.0\.0:7070/);
  });

  it('tell loopback addresses from others', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].map(isLoopback)).toEqual([true, true, true, true]);
    expect(['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com'].map(isLoopback)).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
  });
});
