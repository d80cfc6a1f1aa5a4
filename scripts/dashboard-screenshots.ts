// `npm run screenshots`: every page of the dashboard, in Debian's Chromium against a real `wrenn up`
// (its own data dir, removed after), saved as PNGs in docs/dashboard/ for docs/dashboard.md. The
// sandboxes, the build and the key in them are made here, through the dashboard or the API.
//
// Root, runsc and the base image (scripts/setup.sh) and a built dashboard (`npm run build`) are
// needed; it runs sandboxes, so run it where no e2e test runs: `flock /tmp/wrenn-e2e.lock npm run screenshots`.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { installDir } from '../test/e2e/support/agent-process.js';
import { apiCall } from '../test/e2e/support/api-client.js';
import { signIn, startDashboardRig } from '../test/e2e/support/dashboard.js';

const outDir = path.resolve(import.meta.dirname, '../docs/dashboard');

await mkdir(outDir, { recursive: true });
const rig = await startDashboardRig(path.join(installDir, 'screenshots'));
try {
  const { url, password, key, browser } = rig;
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await apiCall(url, method, route, { key, body });
    if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };

  // Something to show: two running sandboxes (one with metadata), one paused.
  const web = (await api('POST', '/v1/sandboxes', { template: 'base', metadata: { app: 'web', env: 'dev' } }))
    .id as string;
  await api('POST', '/v1/sandboxes', { template: 'base', metadata: { app: 'worker' } });
  const paused = (await api('POST', '/v1/sandboxes', { template: 'base' })).id as string;
  await api('POST', `/v1/sandboxes/${paused}/pause`);
  await api('POST', `/v1/sandboxes/${web}/exec`, {
    cmd: 'mkdir -p /home/user/project/src && echo "print(42)" > /home/user/project/main.py && head -c 300000 /dev/urandom > /home/user/project/data.bin',
  });

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const shot = async (name: string, target: Page = page) => {
    await target.waitForTimeout(400); // animations and charts settle
    await target.screenshot({ path: path.join(outDir, `${name}.png`) });
    console.log(`docs/dashboard/${name}.png`);
  };
  const go = async (hash: string, heading: string) => {
    await page.goto(`${url}/#${hash}`);
    await page.getByRole('heading', { name: heading }).first().waitFor();
  };

  await page.goto(`${url}/`);
  await page.getByLabel('Email').fill('admin@wrenn.local');
  await shot('sign-in');
  await signIn(page, url, 'admin@wrenn.local', password);
  await page.getByText(paused).first().waitFor();
  await shot('sandboxes');
  await page.getByRole('button', { name: 'New sandbox' }).click();
  await page.getByRole('dialog', { name: 'New sandbox' }).waitFor();
  await shot('new-sandbox');
  await page.keyboard.press('Escape');

  await go(`/sandboxes/${web}`, web);
  await shot('sandbox-overview');
  await page.getByRole('tab', { name: 'Terminal' }).click();
  await page.getByRole('status').filter({ hasText: 'Connected' }).waitFor({ timeout: 30_000 });
  await page.keyboard.type('ls -la ~/project && python3 ~/project/main.py\n');
  await page.getByTestId('terminal').getByText('main.py').first().waitFor();
  await shot('sandbox-terminal');
  await page.getByRole('tab', { name: 'Files' }).click();
  await page.getByRole('button', { name: 'project' }).click();
  await page.getByText('data.bin').waitFor({ timeout: 60_000 });
  await shot('sandbox-files');
  // The agent samples every few seconds: wait for a few points on the charts.
  await page.waitForTimeout(15_000);
  await page.getByRole('tab', { name: 'Metrics' }).click();
  await page.getByRole('img').first().waitFor({ timeout: 60_000 });
  await shot('sandbox-metrics');

  await go('/builds', 'Builds');
  await page.getByRole('button', { name: 'New build' }).click();
  const dialog = page.getByRole('dialog', { name: 'New build' });
  await dialog.getByLabel('Template name').fill('python-tools');
  await dialog
    .getByLabel('Recipe')
    .fill('echo installing tools\nENV TOOLS=ready\nmkdir -p ~/tools && echo "$TOOLS" > ~/tools/state');
  await dialog.getByLabel('Healthcheck').fill('test -f /home/user/tools/state');
  await dialog.getByLabel('Kind').selectOption('image');
  await shot('new-build');
  await dialog.getByRole('button', { name: 'Build' }).click();
  await dialog.waitFor({ state: 'detached' });
  await page
    .getByRole('row')
    .filter({ hasText: 'python-tools' })
    .first()
    .getByText('ready', { exact: true })
    .waitFor({ timeout: 180_000 });
  await shot('builds');
  await go('/templates', 'Templates');
  await page.getByRole('cell', { name: 'python-tools', exact: true }).waitFor();
  await shot('templates');

  await go('/keys', 'API keys');
  await page.getByLabel('Key name').fill('ci');
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.getByLabel('New API key').waitFor();
  await shot('api-keys');
  await page.getByRole('button', { name: 'Done' }).click();

  await go('/team', 'Team');
  await shot('team');

  // Hosts are a BYOC team's page: the admin's own team made one for the picture.
  const { token } = (
    await apiCall(url, 'POST', '/v1/auth/login', { body: { email: 'admin@wrenn.local', password } })
  ).body as { token: string };
  const me = (await apiCall(url, 'GET', '/v1/me', { bearer: token })).body as { teams: { id: string }[] };
  await apiCall(url, 'PUT', `/v1/admin/teams/${me.teams[0]!.id}/byoc`, {
    bearer: token,
    body: { is_byoc: true },
  });
  await page.reload();
  await go('/hosts', 'Hosts');
  await page.getByRole('button', { name: 'Register host' }).click();
  await page.getByRole('heading', { name: 'Register the new host' }).waitFor();
  await page.waitForTimeout(1500); // the token's reveal
  await shot('hosts-register');

  for (const [hash, heading] of [
    ['/admin/hosts', 'Hosts'],
    ['/admin/templates', 'Templates'],
    ['/admin/teams', 'Teams'],
    ['/admin/users', 'Users'],
    ['/admin/audit', 'Audit log'],
  ] as const) {
    await go(hash, heading);
    await shot(`admin-${hash.split('/')[2]}`);
  }

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await signIn(phone, url, 'admin@wrenn.local', password);
  await phone.getByText(paused).first().waitFor();
  await shot('phone-sandboxes', phone);
} finally {
  await rig.stop();
}
