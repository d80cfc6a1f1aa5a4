import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { printedApiUrl, startWrenn, type WrennProcess } from './wrenn-process.js';

/** A `wrenn up` of its own (data dir `dataDir`, emptied first and removed by `stop`) and Debian's Chromium. */
export interface DashboardRig {
  up: WrennProcess;
  /** The server's address (the dashboard is at `${url}/`). */
  url: string;
  /** The bootstrap admin's password and API key, as `wrenn up` wrote them. */
  password: string;
  key: string;
  browser: Browser;
  stop(): Promise<void>;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

export async function startDashboardRig(dataDir: string): Promise<DashboardRig> {
  await rm(dataDir, { recursive: true, force: true });
  const up = await startWrenn('up', dataDir, /^Try: /m);
  const stopUp = async () => {
    up.child.kill('SIGINT');
    await up.exited;
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const secret = async (file: string) =>
      (await readFile(path.join(dataDir, 'server', file), 'utf8')).trim();
    const [password, key] = await Promise.all([secret('admin-password'), secret('admin-api-key')]);
    const browser = await launchChromium();
    return {
      up,
      url: printedApiUrl(up.stdout),
      password,
      key,
      browser,
      async stop() {
        await browser.close();
        await stopUp();
      },
    };
  } catch (err) {
    await stopUp();
    throw err;
  }
}

/** A page that fails the test on any console error or uncaught exception (see `problems`). */
export async function openPage(
  browser: Browser,
  width = 1280,
  height = 800,
): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width, height }, acceptDownloads: true });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page: ${err.message}`));
  return { page, problems };
}

/** Fills the sign-in form and submits it (the caller waits for what should follow). */
export async function submitSignIn(page: Page, url: string, email: string, password: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Signs in and waits for the first page (Sandboxes). */
export async function signIn(page: Page, url: string, email: string, password: string): Promise<void> {
  await submitSignIn(page, url, email, password);
  await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
}
