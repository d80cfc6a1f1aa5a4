import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installDir } from './support/agent-process.js';
import { apiCall } from './support/api-client.js';
import { DevHost } from './support/fleet.js';
import {
  openPage as openRigPage,
  signIn as signInAs,
  startDashboardRig,
  type DashboardRig,
} from './support/dashboard.js';

// The dashboard outside a single sandbox (templates, builds, team, hosts, the admin area), driven in
// Debian's Chromium against a real `wrenn up`, with a real second agent (scripts/dev-host.sh) for a
// BYOC team's host.
const dataDir = path.join(installDir, 'e2e-dashboard-admin');
const USER_EMAIL = 'byoc-owner@example.com';
const USER_PASSWORD = 'a long enough password';

let rig: DashboardRig;
let url: string;
let password: string;
let adminToken: string;
const devHost = new DevHost('e2dh');

beforeAll(async () => {
  await devHost.remove(); // what a failed run left under this name
  rig = await startDashboardRig(dataDir);
  ({ url, password } = rig);
  const login = await apiCall(url, 'POST', '/v1/auth/login', {
    body: { email: 'admin@wrenn.local', password },
  });
  expect(login.status).toBe(200);
  adminToken = login.body.token as string;
}, 120_000);

afterAll(async () => {
  await devHost.remove().catch((err: unknown) => console.error(err));
  await rig?.stop();
}, 120_000);

const openPage = (width?: number, height?: number) => openRigPage(rig.browser, width, height);
const signIn = (page: Page, email: string, pass: string) => signInAs(page, url, email, pass);

/** The user who is not an admin: invited by the admin through the API, signed up with the invite. */
async function signUpUser(): Promise<{ token: string; teamId: string }> {
  const invite = await apiCall(url, 'POST', '/v1/admin/invites', {
    bearer: adminToken,
    body: { email: USER_EMAIL },
  });
  expect(invite.status).toBe(201);
  const signup = await apiCall(url, 'POST', '/v1/auth/signup', {
    body: { email: USER_EMAIL, password: USER_PASSWORD, invite: invite.body.token },
  });
  expect(signup.status, JSON.stringify(signup.body)).toBe(201);
  return { token: signup.body.token as string, teamId: (signup.body.team as { id: string }).id };
}

describe('the dashboard beyond a sandbox', () => {
  let user: { token: string; teamId: string };

  it('builds a template from the Builds dialog: its log appears as it runs, it ends ready, and it is a template', async () => {
    const { page, problems } = await openPage();
    await signIn(page, 'admin@wrenn.local', password);
    await page.getByRole('link', { name: 'Builds', exact: true }).click();
    await page.getByRole('heading', { name: 'Builds' }).waitFor();
    await page.getByText('No builds yet.').waitFor();
    await page.getByRole('button', { name: 'New build' }).click();
    const dialog = page.getByRole('dialog', { name: 'New build' });
    await dialog.getByLabel('Template name').fill('dash-built');
    await dialog
      .getByLabel('Recipe')
      .fill('echo dashboard-build-says-$((6*7))\nENV STAGE=dashboard\necho "$STAGE" > /home/user/stage');
    await dialog.getByLabel('Healthcheck').fill('test -f /home/user/stage');
    await dialog.getByLabel('Memory (MB)').fill('512');
    await dialog.getByLabel('Kind').selectOption('image');
    await dialog.getByRole('button', { name: 'Build' }).click();
    await dialog.waitFor({ state: 'detached' });

    // The new build's row is open: its log fills in while it runs, and it ends ready.
    const log = page.getByRole('region', { name: 'Log of the build of dash-built' });
    await log.getByText('dashboard-build-says-42').first().waitFor({ timeout: 120_000 });
    const row = page.getByRole('row').filter({ hasText: 'dash-built' }).first();
    await row.getByText('ready', { exact: true }).waitFor({ timeout: 120_000 });
    expect(
      await page.getByRole('progressbar', { name: 'Progress of dash-built' }).getAttribute('value'),
    ).toBe(await page.getByRole('progressbar', { name: 'Progress of dash-built' }).getAttribute('max'));
    // Per step: the recipe's first line is step 1.
    await log.getByText('Step 1', { exact: true }).waitFor();

    // The API agrees, and the template is listed.
    const { key } = rig;
    const builds = await apiCall(url, 'GET', '/v1/builds', { key });
    expect((builds.body.builds as { template: string; status: string }[])[0]).toMatchObject({
      template: 'dash-built',
      status: 'ready',
    });
    await page.getByRole('link', { name: 'Templates', exact: true }).click();
    const own = page.getByRole('table', { name: 'The team’s templates' });
    await own.getByRole('cell', { name: 'dash-built', exact: true }).waitFor();
    await page
      .getByRole('table', { name: 'Platform templates' })
      .getByRole('cell', { name: 'base', exact: true })
      .waitFor();
    await page.close();
    expect(problems).toEqual([]);
  }, 300_000);

  it('shows the server’s message for a bad build, and cancels a running one', async () => {
    const { page, problems } = await openPage();
    await signIn(page, 'admin@wrenn.local', password);
    await page.getByRole('link', { name: 'Builds', exact: true }).click();
    await page.getByRole('button', { name: 'New build' }).click();
    const dialog = page.getByRole('dialog', { name: 'New build' });
    await dialog.getByLabel('Template name').fill('Not A Name');
    await dialog.getByLabel('Recipe').fill('true');
    await dialog.getByRole('button', { name: 'Build' }).click();
    // The 400 names the field; the dialog stays open with it.
    await expect
      .poll(() => dialog.getByRole('alert').textContent())
      .toMatch(/^template: .*\(invalid_argument\)$/);

    await dialog.getByLabel('Template name').fill('dash-slow');
    await dialog.getByLabel('Recipe').fill('sleep 600');
    await dialog.getByLabel('Kind').selectOption('image');
    await dialog.getByRole('button', { name: 'Build' }).click();
    await dialog.waitFor({ state: 'detached' });
    const row = page.getByRole('row').filter({ hasText: 'dash-slow' }).first();
    await row.getByText('building', { exact: true }).waitFor({ timeout: 60_000 });
    await row.getByRole('button', { name: 'Cancel the build of dash-slow' }).click();
    await row.getByText('cancelled', { exact: true }).waitFor({ timeout: 30_000 });
    expect(await row.getByRole('button', { name: 'Cancel the build of dash-slow' }).count()).toBe(0);
    const { key } = rig;
    const builds = await apiCall(url, 'GET', '/v1/builds', { key });
    expect((builds.body.builds as { template: string; status: string }[])[0]).toMatchObject({
      template: 'dash-slow',
      status: 'cancelled',
    });
    await page.close();
    // (The refused build's 400 is the one console line Chromium prints for it.)
    expect(problems.filter((p) => !p.includes('400'))).toEqual([]);
  }, 120_000);

  it('shows a user who is not an admin nothing of the admin area, and the admin API refuses them', async () => {
    user = await signUpUser();
    for (const p of ['/v1/admin/users', '/v1/admin/teams', '/v1/admin/hosts', '/v1/admin/builds']) {
      const refused = await apiCall(url, 'GET', p, { bearer: user.token });
      expect(refused, p).toEqual({
        status: 403,
        body: { code: 'permission_denied', message: 'only administrators may use /v1/admin' },
      });
    }

    const { page, problems } = await openPage();
    await signIn(page, USER_EMAIL, USER_PASSWORD);
    await page.getByRole('link', { name: 'Team', exact: true }).waitFor();
    expect(await page.getByRole('link', { name: 'Admin', exact: true }).count()).toBe(0);
    expect(await page.getByRole('navigation', { name: 'Admin' }).count()).toBe(0);
    // Not a BYOC team: no Hosts.
    expect(await page.getByRole('link', { name: 'Hosts', exact: true }).count()).toBe(0);
    for (const route of ['/#/admin', '/#/admin/users', '/#/admin/teams']) {
      await page.goto(`${url}${route}`);
      await page.getByText('There is no such page.').waitFor();
      expect(await page.getByRole('heading', { level: 1 }).count(), route).toBe(0);
      expect(await page.getByRole('table').count(), route).toBe(0);
    }
    await page.close();
    expect(problems).toEqual([]);
  });

  it('the admin makes a team BYOC; its owner registers a host (token shown once) and a real agent with it shows online', async () => {
    const admin = await openPage();
    await signIn(admin.page, 'admin@wrenn.local', password);
    await admin.page.getByRole('link', { name: 'Admin', exact: true }).click();
    await admin.page.getByRole('heading', { name: 'Hosts' }).waitFor();
    // `wrenn up`'s own agent is a platform host, online.
    await admin.page
      .getByRole('table', { name: 'Platform hosts' })
      .getByText('online', { exact: true })
      .waitFor();
    await admin.page.getByRole('link', { name: 'Users', exact: true }).click();
    await admin.page.getByRole('cell', { name: USER_EMAIL }).waitFor();
    await admin.page.getByRole('link', { name: 'Teams', exact: true }).click();
    const toggle = admin.page.getByRole('switch', { name: `BYOC: ${USER_EMAIL}'s team` });
    expect(await toggle.getAttribute('aria-checked')).toBe('false');
    // From the keyboard.
    await toggle.focus();
    await admin.page.keyboard.press('Space');
    await expect.poll(() => toggle.getAttribute('aria-checked')).toBe('true');
    const teams = await apiCall(url, 'GET', '/v1/admin/teams', { bearer: adminToken });
    expect(
      (teams.body.teams as { id: string; is_byoc: boolean }[]).find((t) => t.id === user.teamId),
    ).toMatchObject({ is_byoc: true });
    await admin.page.getByRole('link', { name: 'Audit log', exact: true }).click();
    await admin.page.getByRole('cell', { name: 'admin.team_byoc' }).first().waitFor();

    const owner = await openPage();
    await signIn(owner.page, USER_EMAIL, USER_PASSWORD);
    await owner.page.getByRole('link', { name: 'Hosts', exact: true }).click();
    await owner.page.getByText('No hosts yet.').waitFor();
    await owner.page.getByRole('button', { name: 'Register host' }).click();
    const token = (await owner.page.getByLabel('Registration token').textContent())!;
    expect(token).toMatch(/^wrr_/);
    const command = (await owner.page.getByLabel('Command to run on the host').textContent())!;
    expect(command).toContain(`WRENN_REGISTRATION_TOKEN=${token}`);
    expect(command).toContain(`WRENN_CONTROL_PLANE_URL=${url}`);
    // A pending host until it registers.
    const hosts = owner.page.getByRole('table', { name: 'Hosts' });
    await hosts.getByText('pending', { exact: true }).waitFor();
    await owner.page.getByRole('button', { name: 'Done' }).click();
    expect(await owner.page.getByText(token).count()).toBe(0);

    // A real agent in a network namespace of its own registers with the token.
    await devHost.start({
      WRENN_URL: url,
      WRENN_REGISTRATION_TOKEN: token,
      WRENN_HEARTBEAT_SEC: '1',
      WRENN_SANDBOX_NAMESERVERS: '',
    });
    await hosts.getByText('online', { exact: true }).waitFor({ timeout: 30_000 });
    await hosts.getByText(devHost.address).waitFor();
    // The token was shown once: a reload does not show it again.
    await owner.page.reload();
    await hosts.getByText('online', { exact: true }).waitFor();
    expect(await owner.page.getByText(token).count()).toBe(0);
    const listed = await apiCall(url, 'GET', `/v1/hosts?team_id=${user.teamId}`, { bearer: user.token });
    expect(listed.body.hosts).toEqual([
      expect.objectContaining({
        kind: 'byoc',
        team_id: user.teamId,
        status: 'online',
        address: devHost.address,
      }),
    ]);

    // The admin sees it under BYOC, with its team.
    await admin.page.getByRole('link', { name: 'All hosts', exact: true }).click();
    await admin.page.getByRole('tab', { name: 'BYOC' }).click();
    const byoc = admin.page.getByRole('table', { name: 'BYOC hosts' });
    await byoc.getByText(`${USER_EMAIL}'s team`).waitFor();
    await byoc.getByText('online', { exact: true }).waitFor();

    // The owner deletes it; its agent is refused from then on.
    const hostId = (listed.body.hosts as { id: string }[])[0]!.id;
    await owner.page.getByRole('button', { name: `Delete host ${hostId.slice(0, 8)}` }).click();
    await owner.page.getByText('No hosts yet.').waitFor();
    for (const { page } of [admin, owner]) await page.close();
    expect(admin.problems).toEqual([]);
    expect(owner.problems).toEqual([]);
  }, 240_000);

  it('adds a member on the Team page, changes their role and removes them; the audit log shows it', async () => {
    const { page, problems } = await openPage();
    await signIn(page, 'admin@wrenn.local', password);
    await page.getByRole('link', { name: 'Team', exact: true }).click();
    await page.getByRole('heading', { name: 'Team' }).waitFor();
    await page.getByLabel('Member email').fill(USER_EMAIL);
    await page.getByRole('button', { name: 'Add member' }).click();
    const role = page.getByRole('combobox', { name: `Role of ${USER_EMAIL}` });
    await role.waitFor();
    expect(await role.inputValue()).toBe('member');
    const me = await apiCall(url, 'GET', '/v1/me', { bearer: adminToken });
    const teamId = (me.body.teams as { id: string }[])[0]!.id;
    const members = async () =>
      (await apiCall(url, 'GET', `/v1/teams/${teamId}/members`, { bearer: adminToken })).body.members as {
        email: string;
        role: string;
      }[];
    expect(await members()).toContainEqual(expect.objectContaining({ email: USER_EMAIL, role: 'member' }));

    await role.selectOption('owner');
    await expect.poll(async () => (await members()).find((m) => m.email === USER_EMAIL)?.role).toBe('owner');
    await page.getByRole('cell', { name: 'member.role_change' }).first().waitFor();
    await page.getByRole('button', { name: `Remove ${USER_EMAIL}` }).click();
    await role.waitFor({ state: 'detached' });
    expect((await members()).map((m) => m.email)).not.toContain(USER_EMAIL);
    await page.getByRole('cell', { name: 'member.remove' }).first().waitFor();
    await page.close();
    expect(problems).toEqual([]);
  });

  it('is usable at phone width: the sidebar and the pages fit', async () => {
    const { page, problems } = await openPage(390, 844);
    await signIn(page, 'admin@wrenn.local', password);
    for (const [link, heading] of [
      ['Builds', 'Builds'],
      ['Templates', 'Templates'],
      ['Team', 'Team'],
      ['Admin', 'Hosts'],
    ] as const) {
      await page.getByRole('link', { name: link, exact: true }).click();
      await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
      const width = Number(await page.evaluate('document.documentElement.scrollWidth'));
      expect(width, link).toBeLessThanOrEqual(390);
    }
    const button = await page.getByRole('button', { name: 'Add platform host' }).boundingBox();
    expect(button && button.x + button.width).toBeLessThanOrEqual(390);
    await page.close();
    expect(problems).toEqual([]);
  });
});
