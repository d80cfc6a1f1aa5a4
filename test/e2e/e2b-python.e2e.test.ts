import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { startControlPlane, teamApiKey, type ControlPlane } from './support/api-client.js';

// The official e2b Python SDK (sync and async clients), unchanged, against a real control plane and
// agent: test/python/*.py under pytest, from the venv scripts/test-python.sh makes. The user's
// variables only: E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY.
const pythonDir = path.join(repoRoot, 'test/python');
const python = path.join(pythonDir, '.venv/bin/python');

let agent: AgentProcess;
let plane: ControlPlane;

beforeAll(async () => {
  agent = await startAgentProcess();
  plane = await startControlPlane(agent.url);
});

afterAll(async () => {
  await plane?.stop();
  await agent?.stop();
});

function pytest(files: string, env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-m', 'pytest', '-v', '-p', 'no:cacheprovider', files], {
      cwd: pythonDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (chunk: Buffer) => {
      output += chunk.toString();
      process.stdout.write(chunk);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, output }));
  });
}

describe('the e2b Python SDK against Wrenn', () => {
  for (const [client, files] of [
    ['sync', 'test_sync_sdk.py'],
    ['async', 'test_async_sdk.py'],
  ] as const) {
    it(`passes the compatibility suite with the ${client} client`, async () => {
      expect(existsSync(python), `no venv at ${python}: run scripts/test-python.sh`).toBe(true);
      const { url } = plane.server;
      const stamp = `${client}-${Date.now()}`;
      const { code, output } = await pytest(files, {
        E2B_API_URL: url,
        E2B_SANDBOX_URL: url,
        E2B_API_KEY: await teamApiKey(url, `py-a-${stamp}@example.com`),
        WRENN_OTHER_TEAM_KEY: await teamApiKey(url, `py-b-${stamp}@example.com`),
      });
      const summary = output.trim().split('\n').slice(-40).join('\n');
      expect(code, `pytest failed:\n${summary}`).toBe(0);
      // A run that collected nothing also exits non-zero, but make the count explicit.
      expect(output).toMatch(/\d+ passed/);
      expect(output).not.toMatch(/\d+ (failed|error|skipped)/);
    }, 900_000);
  }
});
