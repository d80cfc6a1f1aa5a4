import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installDir } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import {
  openPage as openRigPage,
  startDashboardRig,
  submitSignIn,
  type DashboardRig,
} from './support/dashboard.js';

// The dashboard, driven in Debian's Chromium against a real `wrenn up` (real agent, real sandboxes).
const dataDir = path.join(installDir, 'e2e-dashboard');

let rig: DashboardRig;
let url: string;
let password: string;

beforeAll(async () => {
  rig = await startDashboardRig(dataDir);
  ({ url, password } = rig);
  expect(rig.up.stdout).toContain(`dashboard:  ${url}/`);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const openPage = (width?: number, height?: number) => openRigPage(rig.browser, width, height);
const signIn = (page: Parameters<typeof submitSignIn>[0], email: string, pass: string) =>
  submitSignIn(page, url, email, pass);

describe('the dashboard', () => {
  it('refuses a wrong password with the server’s message, and signs in with the right one', async () => {
    const { page, problems } = await openPage();
    await signIn(page, 'admin@wrenn.local', 'not the password');
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/wrong email or password/);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
    // A reload keeps the session.
    await page.reload();
    await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
    await page.close();
    // (The 401 of the wrong password is the one console line Chromium prints for it.)
    expect(problems.filter((p) => !p.includes('401'))).toEqual([]);
  });

  it('creates a sandbox from a template, pauses, resumes and kills it', async () => {
    const { page, problems } = await openPage();
    await signIn(page, 'admin@wrenn.local', password);
    await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
    await page.getByRole('button', { name: 'New sandbox' }).click();
    const dialog = page.getByRole('dialog', { name: 'New sandbox' });
    await dialog.getByLabel('Template').selectOption('base');
    await dialog.getByRole('button', { name: 'Create' }).click();
    // The sandbox's own page, once it runs.
    await page.waitForURL(/#\/sandboxes\/[a-z0-9]+$/, { timeout: 60_000 });
    const id = /#\/sandboxes\/([a-z0-9]+)$/.exec(page.url())![1]!;
    await page.getByText('running', { exact: true }).waitFor();

    // The API agrees with what the page shows.
    const { key } = rig;
    const status = async () => (await apiCall(url, 'GET', `/v1/sandboxes/${id}`, { key })).body.status;
    expect(await status()).toBe('running');

    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('button', { name: 'Resume' }).waitFor({ timeout: 60_000 });
    expect(await status()).toBe('paused');
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('button', { name: 'Pause' }).waitFor({ timeout: 60_000 });
    expect(await status()).toBe('running');

    // A terminal in it: a real PTY, sized by the page and resized with it.
    await page.getByRole('tab', { name: 'Terminal' }).click();
    await page.getByRole('status').filter({ hasText: 'Connected' }).waitFor({ timeout: 30_000 });
    // The rendered rows only: with screenReaderMode xterm.js also keeps the text in an accessibility
    // tree and, for a moment, in a live region, so the whole element holds it two or three times.
    const rows = page.getByTestId('terminal').locator('.xterm-rows');
    const screen = async () => (await rows.textContent()) ?? '';
    await page.keyboard.type('echo hello-$((6*7)); echo "size=$(stty size | tr " " x)"\n');
    await expect.poll(screen, { timeout: 20_000 }).toMatch(/hello-42/);
    const size = async () => [...(await screen()).matchAll(/size=(\d+x\d+)/g)].map((m) => m[1]);
    await expect.poll(size).toHaveLength(1);
    const [before] = await size();
    await page.setViewportSize({ width: 900, height: 600 });
    await page.keyboard.type('echo "size=$(stty size | tr " " x)"\n');
    await expect.poll(async () => (await size()).at(-1)).not.toBe(before);
    await page.setViewportSize({ width: 1280, height: 800 });

    // Listed with its status and template; keyboard reaches the link.
    await page.getByRole('link', { name: 'Sandboxes' }).first().click();
    const row = page.getByRole('row').filter({ hasText: id });
    await row.getByText('running').waitFor();
    await expect.poll(() => row.getByRole('cell').nth(2).textContent()).toBe('base');

    await row.getByRole('link', { name: id }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Kill' }).click();
    await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
    await expect.poll(status).not.toBe('running');
    await page.close();
    expect(problems).toEqual([]);
  });

  it('creates an API key (shown once, and it works) and revokes it (and it stops working)', async () => {
    const { page, problems } = await openPage();
    await signIn(page, 'admin@wrenn.local', password);
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByRole('heading', { name: 'API keys' }).waitFor();
    await page.getByLabel('Key name').fill('from-the-dashboard');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = (await page.getByLabel('New API key').textContent())!;
    expect(key).toMatch(/^wrn_/);
    expect((await apiCall(url, 'GET', '/v1/sandboxes', { key })).status).toBe(200);
    await page.getByRole('button', { name: 'Done' }).click();
    expect(await page.getByText(key).count()).toBe(0);
    await page.getByRole('button', { name: 'Revoke from-the-dashboard' }).click();
    await page.getByRole('button', { name: 'Revoke from-the-dashboard' }).waitFor({ state: 'detached' });
    expect((await apiCall(url, 'GET', '/v1/sandboxes', { key })).status).toBe(401);
    await page.close();
    expect(problems).toEqual([]);
  });

  it('is usable at phone width', async () => {
    const { page, problems } = await openPage(390, 844);
    await signIn(page, 'admin@wrenn.local', password);
    await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
    const newButton = page.getByRole('button', { name: 'New sandbox' });
    const box = await newButton.boundingBox();
    expect(box && box.x + box.width).toBeLessThanOrEqual(390);
    await page.close();
    expect(problems).toEqual([]);
  });
});
