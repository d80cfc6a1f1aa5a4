import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installDir } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import {
  openPage as openRigPage,
  signIn as signInAs,
  startDashboardRig,
  type DashboardRig,
} from './support/dashboard.js';

// A sandbox's own page in the dashboard (Files, Metrics, Snapshot, Timeout), driven in Debian's
// Chromium against a real `wrenn up`; and the sandbox list with 1,000 rows (served by the test).
const dataDir = path.join(installDir, 'e2e-dashboard-sandbox');

let rig: DashboardRig;
let url: string;
let key: string;

beforeAll(async () => {
  rig = await startDashboardRig(dataDir);
  ({ url, key } = rig);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const openPage = (width?: number, height?: number) => openRigPage(rig.browser, width, height);
const signIn = (page: Page) => signInAs(page, url, 'admin@wrenn.local', rig.password);

const api = (method: string, route: string, body?: unknown) => apiCall(url, method, route, { key, body });

/** Puts `bytes` at `path` in the sandbox through the API (parents are created). */
async function putFile(id: string, file: string, bytes: Buffer) {
  const res = await fetch(`${url}/v1/sandboxes/${id}/files?path=${encodeURIComponent(file)}`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  expect(res.status).toBe(200);
}

describe('a sandbox’s page', () => {
  let id: string;

  beforeAll(async () => {
    const created = await api('POST', '/v1/sandboxes', { template: 'base', timeout_sec: 600 });
    expect(created.status).toBe(201);
    id = created.body.id as string;
  }, 120_000);

  afterAll(async () => {
    if (id) await api('DELETE', `/v1/sandboxes/${id}`);
  });

  it('GET /v1/sandboxes/{id}/dir against the real agent: a listing, a missing path, a file', async () => {
    await putFile(id, '/home/user/dir-route/a.txt', Buffer.from('abc'));
    const listed = await api('GET', `/v1/sandboxes/${id}/dir?path=/home/user/dir-route`);
    expect(listed.status).toBe(200);
    expect(listed.body).toMatchObject({
      path: '/home/user/dir-route',
      truncated: false,
      entries: [{ name: 'a.txt', path: '/home/user/dir-route/a.txt', type: 'file', size: 3 }],
    });
    const entry = (listed.body.entries as { modified_at: string }[])[0]!;
    expect(Math.abs(Date.parse(entry.modified_at) - Date.now())).toBeLessThan(10 * 60_000);
    const missing = await api('GET', `/v1/sandboxes/${id}/dir?path=/no/such/dir`);
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('not_found');
    const file = await api('GET', `/v1/sandboxes/${id}/dir?path=/home/user/dir-route/a.txt`);
    expect(file.status).toBe(400);
    expect(file.body.message).toMatch(/not a directory/);
    const relative = await api('GET', `/v1/sandboxes/${id}/dir?path=home/user`);
    expect(relative.status).toBe(400);
    expect(relative.body.message).toMatch(/^path: must be absolute/);
  });

  it('Files: upload (picked and dropped), the listing, download byte for byte, into a directory and back', async () => {
    const { page, problems } = await openPage();
    await signIn(page);
    await page.goto(`${url}/#/sandboxes/${id}`);
    await page.getByRole('tab', { name: 'Files' }).click();
    const files = page.getByRole('region', { name: 'Files' });
    // The listing, or the error the page shows instead (its text then fails the test, saying why).
    await files
      .getByRole('table', { name: 'Files in /home/user' })
      .or(files.getByText('is empty'))
      .or(files.getByRole('alert'))
      .waitFor({ timeout: 60_000 });
    expect(await files.getByRole('alert').count(), (await files.textContent()) ?? '').toBe(0);

    // Picked with the file input: streamed to the API, then listed.
    const bytes = randomBytes(200_000);
    await files.getByLabel('Upload files').setInputFiles({
      name: 'picked.bin',
      mimeType: 'application/octet-stream',
      buffer: bytes,
    });
    await files.getByRole('status').filter({ hasText: 'Uploaded picked.bin' }).waitFor();
    const row = files.getByRole('row').filter({ hasText: 'picked.bin' });
    await row.waitFor();
    expect(await row.getByRole('cell').nth(1).textContent()).toBe('file');
    expect(await row.getByRole('cell').nth(2).getAttribute('title')).toBe('200000 bytes');

    // Downloaded with the session's headers and saved: the same bytes.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      files.getByRole('button', { name: 'Download picked.bin' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('picked.bin');
    expect((await readFile(await download.path())).equals(bytes)).toBe(true);

    // Dropped onto the page.
    // (Strings: the page's code runs in the browser, whose types the tests' tsconfig does not have.)
    const dropped = await page.evaluateHandle(`(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(['dropped here\\n'], 'dropped.txt', { type: 'text/plain' }));
      return transfer;
    })()`);
    await files.getByTestId('drop-zone').dispatchEvent('drop', { dataTransfer: dropped });
    await files.getByRole('row').filter({ hasText: 'dropped.txt' }).waitFor();
    const inside = await api('POST', `/v1/sandboxes/${id}/exec`, { cmd: 'cat /home/user/dropped.txt' });
    expect(inside.body.stdout).toBe('dropped here\n');

    // Into a directory (a click), its entries, and back by the breadcrumb and by Up.
    await putFile(id, '/home/user/project/src/main.py', Buffer.from('print(1)\n'));
    await files.getByRole('button', { name: 'Refresh' }).click();
    await files.getByRole('button', { name: 'project/' }).click();
    await files.getByRole('table', { name: 'Files in /home/user/project' }).waitFor();
    await files.getByRole('button', { name: 'src/' }).click();
    await files.getByRole('row').filter({ hasText: 'main.py' }).waitFor();
    const crumbs = files.getByRole('navigation', { name: 'Path' });
    expect(await crumbs.getByRole('button', { name: 'src' }).getAttribute('aria-current')).toBe('location');
    await crumbs.getByRole('button', { name: 'project' }).click();
    await files.getByRole('table', { name: 'Files in /home/user/project' }).waitFor();
    await files.getByRole('button', { name: 'Up', exact: true }).click();
    await files.getByRole('row').filter({ hasText: 'picked.bin' }).waitFor();
    await page.close();
    expect(problems).toEqual([]);
  });

  it('Metrics: CPU, memory and disk charts once the host has samples, over the range picked', async () => {
    const { page, problems } = await openPage();
    await signIn(page);
    await page.goto(`${url}/#/sandboxes/${id}`);
    await page.getByRole('tab', { name: 'Metrics' }).click();
    const metrics = page.getByRole('region', { name: 'Metrics' });
    expect(await metrics.getByRole('radio', { name: '10 min' }).isChecked()).toBe(true);
    // The tab refreshes itself: the charts come once the agent has sampled the sandbox.
    const cpu = metrics.getByRole('img', { name: /^CPU use over the last 10 minutes/ });
    await cpu.waitFor({ timeout: 60_000 });
    await metrics.getByRole('img', { name: /^Memory used over the last 10 minutes/ }).waitFor();
    await metrics.getByRole('img', { name: /^Disk used over the last 10 minutes/ }).waitFor();
    expect(await cpu.locator('canvas').count()).toBe(1);
    const memory = await metrics.getByRole('img', { name: /^Memory used/ }).getAttribute('aria-label');
    expect(memory).toMatch(/now \d+ of \d+ MiB$/);

    // Another range: the charts for it, or the empty state until its first average.
    await metrics.getByRole('radio', { name: '24 h' }).check();
    await metrics
      .getByRole('img', { name: /^CPU use over the last 24 hours/ })
      .or(metrics.getByText('No samples yet.'))
      .waitFor();
    await page.close();
    expect(problems).toEqual([]);
  });

  it('Timeout sets the sandbox’s timeout; Snapshot makes a snapshot and says which', async () => {
    const { page, problems } = await openPage();
    await signIn(page);
    await page.goto(`${url}/#/sandboxes/${id}`);
    await page.getByText('600 s').waitFor();

    await page.getByRole('button', { name: 'Timeout' }).click();
    const timeout = page.getByRole('dialog', { name: 'Set the timeout' });
    await timeout.getByLabel('Timeout (seconds)').fill('1800');
    await timeout.getByRole('button', { name: 'Save' }).click();
    await timeout.waitFor({ state: 'detached' });
    expect((await api('GET', `/v1/sandboxes/${id}`)).body.timeout_sec).toBe(1800);
    await page.getByText('1800 s').waitFor();

    await page.getByRole('button', { name: 'Snapshot' }).click();
    const snapshot = page.getByRole('dialog', { name: 'Snapshot the sandbox' });
    await snapshot.getByLabel('Snapshot name').fill('from-the-page');
    await snapshot.getByRole('button', { name: 'Create snapshot' }).click();
    const said = page.getByRole('status').filter({ hasText: 'Snapshot “from-the-page” created' });
    await said.waitFor({ timeout: 120_000 });
    const listed = (await api('GET', '/v1/snapshots')).body.snapshots as {
      id: string;
      name: string;
      source_sandbox_id: string;
    }[];
    const made = listed.find((s) => s.name === 'from-the-page');
    expect(made).toMatchObject({ source_sandbox_id: id });
    expect(await said.textContent()).toContain(made!.id);
    // The sandbox runs on after its snapshot.
    await page.getByRole('button', { name: 'Pause' }).waitFor();
    expect((await api('GET', `/v1/sandboxes/${id}`)).body.status).toBe('running');

    // A snapshot name the API refuses: its message, the dialog stays open.
    await page.getByRole('button', { name: 'Snapshot' }).click();
    await snapshot.getByLabel('Snapshot name').fill('from-the-page');
    await snapshot.getByRole('button', { name: 'Create snapshot' }).click();
    await snapshot.getByRole('alert').waitFor({ timeout: 60_000 });
    await snapshot.getByRole('button', { name: 'Cancel' }).click();
    await page.close();
    // (The refused snapshot's 409 is the one console line Chromium prints for it.)
    expect(problems.filter((p) => !p.includes('409'))).toEqual([]);
    await api('DELETE', `/v1/snapshots/${made!.id}`);
  });

  it('a paused sandbox’s directory is a 409, and the page offers no Files tab', async () => {
    expect((await api('POST', `/v1/sandboxes/${id}/pause`)).status).toBe(200);
    const paused = await api('GET', `/v1/sandboxes/${id}/dir?path=/home/user`);
    expect(paused.status).toBe(409);
    expect(paused.body.code).toBe('failed_precondition');
    const { page, problems } = await openPage();
    await signIn(page);
    await page.goto(`${url}/#/sandboxes/${id}`);
    await page.getByRole('button', { name: 'Resume' }).waitFor();
    expect(await page.getByRole('tab', { name: 'Files' }).isDisabled()).toBe(true);
    await page.close();
    expect(problems).toEqual([]);
  });
});

/** The part of an element the list's test scrolls by (the tests' tsconfig has no DOM types). */
interface Scroller {
  scrollTop: number;
  scrollHeight: number;
}

describe('the sandbox list', () => {
  it('keeps 1,000 sandboxes smooth: a window of rows in the DOM, scrolled and tabbed through', async () => {
    const { page, problems } = await openPage();
    const now = Date.now();
    const sandboxes = Array.from({ length: 1000 }, (_, i) => ({
      id: `fake${String(i).padStart(4, '0')}`,
      template: i % 2 ? 'base' : 'python',
      status: i % 3 ? 'running' : 'paused',
      vcpus: 1,
      memory_mb: 512,
      disk_mb: 1024,
      timeout_sec: 300,
      metadata: {},
      status_reason: '',
      auto_paused: false,
      host_id: null,
      created_at: new Date(now - i * 60_000).toISOString(),
      network: { allow_internet: null, allow_out: [], deny_out: [], allow_public_traffic: true },
      oom_kills: 0,
      last_oom_kill: null,
    }));
    // The list's rendering is under test here, not the API: the page is served 1,000 rows.
    await page.route(
      (u) => u.pathname === '/v1/sandboxes',
      (route) =>
        route.request().method() === 'GET' ? route.fulfill({ json: { sandboxes } }) : route.continue(),
    );
    await signIn(page);
    const table = page.getByTestId('sandbox-table');
    await table.getByRole('row').filter({ hasText: 'fake0000' }).waitFor();
    await page.getByText('1000 sandboxes').waitFor();
    const rowCount = () => table.getByRole('row').count();
    expect(await rowCount()).toBeLessThan(60);
    expect(await table.getByRole('table').getAttribute('aria-rowcount')).toBe('1001');

    // Scrolled to the end: the last row, still only a window.
    await table.evaluate((el: Scroller) => (el.scrollTop = el.scrollHeight));
    const last = table.getByRole('row').filter({ hasText: 'fake0999' });
    await last.waitFor();
    expect(await last.getAttribute('aria-rowindex')).toBe('1001');
    expect(await table.getByRole('row').filter({ hasText: 'fake0000' }).count()).toBe(0);
    expect(await rowCount()).toBeLessThan(60);

    // Back to the top, then the keyboard: Tab walks the links past the first window.
    await table.evaluate((el: Scroller) => (el.scrollTop = 0));
    await table.getByRole('link', { name: 'fake0000' }).focus();
    for (let i = 0; i < 60; i++) await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('fake0060');
    await table.getByRole('row').filter({ hasText: 'fake0060' }).waitFor();
    expect(await rowCount()).toBeLessThan(60);
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/sandboxes\/fake0060$/);
    await page.close();
    // (The made-up sandbox's page answers 404, the one console line Chromium prints for it.)
    expect(problems.filter((p) => !p.includes('404'))).toEqual([]);
  });
});
