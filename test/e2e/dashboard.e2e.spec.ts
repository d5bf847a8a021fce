/**
 * The dashboard end to end: headless Chromium (Debian's, never downloaded) against a real aggregator on
 * the embedded database (or DATABASE_URL) and real client nodes training over WebSockets. Each step
 * leaves a screenshot in test-output/screenshots/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { generateIdentity } from '@confide/protocol';
import { strategyNames } from '@confide/federated';
import { loadCsv, partitionIid } from '@confide/ml';
import type { RunningAggregator } from '@confide/aggregator';
import { parsePolicy, type ClientNode } from '@confide/client-node';
import { databaseKind } from '../support/database';
import { describeWithBrowser, launchChromium, screenshotPath } from '../support/browser';
import { DATASET, startNode, testAggregator, type TestSite } from '../support/federation';

describeWithBrowser(`the dashboard in Chromium (${databaseKind})`, () => {
  let agg: RunningAggregator;
  let close: () => Promise<void>;
  let browser: Browser;
  let adminToken: string;
  let auditorToken: string;
  let fedId = '';
  const fedName = `breast-cancer-${Math.random().toString(36).slice(2, 6)}`;
  const nodes: ClientNode[] = [];
  const contexts: BrowserContext[] = [];
  /** Uncaught errors in the page, which fail the test that caused them. */
  const pageErrors: string[] = [];

  beforeAll(async () => {
    const env = await testAggregator();
    agg = env.agg;
    close = env.close;
    adminToken = agg.initialAdminToken!;
    auditorToken = await agg.createToken('auditor', 'external auditor');
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) n.stop();
    for (const c of contexts) await c.close();
    await browser?.close();
    await close?.();
  });

  /** A laptop-sized window (1366x768 is the most common laptop screen) in Berlin time. */
  async function newPage(): Promise<Page> {
    const context = await browser.newContext({
      viewport: { width: 1366, height: 768 },
      timezoneId: 'Europe/Berlin',
      locale: 'en-GB',
      acceptDownloads: true,
    });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  }

  const shot = (page: Page, name: string) =>
    page.screenshot({ path: screenshotPath(`dashboard-${name}`), fullPage: true });

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${agg.url}/`);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Federations', level: 1 }).waitFor();
  }

  it('admin: signs in, creates a federation, enrols and approves sites, starts two rounds, watches them complete and the accuracy chart update', async () => {
    const page = await newPage();
    await page.goto(`${agg.url}/`);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shot(page, '01-signin');

    // A wrong token is refused with the server's reason.
    await page.getByLabel('API token').fill(`cfd_admin_${'x'.repeat(43)}`);
    await page.getByLabel('API token').press('Enter');
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toBe('This token was not accepted: the API token is unknown.');

    await page.getByLabel('API token').fill(adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Federations', level: 1 }).waitFor();
    expect(await page.getByTestId('role').textContent()).toBe('admin');
    // The aggregator's identity key, which sites pin, is shown to its admins.
    expect(await page.getByTestId('server-key').textContent()).toContain(agg.serverKeyFingerprint);
    await page.getByText('No federations yet.').waitFor();
    await shot(page, '02-federations-empty');

    // Create a federation; the server's 400 is shown verbatim first.
    await page.getByRole('link', { name: 'Create the first federation' }).click();
    await page.getByRole('heading', { name: 'New federation' }).waitFor();
    await page.getByLabel('Name').fill(fedName);
    await page.getByLabel('Kind').selectOption('json');
    await page.getByLabel('Model spec (JSON)').fill('{ "kind": "cnn", "inputDim": 30 }');
    await page.getByRole('button', { name: 'Create federation' }).click();
    const refusal = 'invalid modelSpec: spec.kind: must be "logistic" or "mlp", got "cnn"';
    await expect.poll(() => page.locator('.server-message').textContent()).toBe(refusal);
    await shot(page, '03-new-federation-server-error');

    await page.getByLabel('Kind').selectOption('logistic');
    await page.getByLabel('Input features').fill('30');
    await page.getByLabel('Local optimizer').selectOption('sgd');
    await page.getByLabel('Learning rate').fill('0.1');
    await page.getByLabel('Batch size').fill('64');
    await page.getByLabel('Seed (optional)').fill('7');
    await page.getByLabel('Minimum sites per round').fill('2');
    await page.getByLabel('Round timeout (s)').fill('60');
    await page.getByLabel('Evaluation timeout (s)').fill('20');
    const dp = page.getByLabel('Protection level');
    if (await dp.isEnabled()) {
      await dp.selectOption('record');
      await page.getByLabel('Noise multiplier z').fill('1.1');
      await page.getByLabel('Clip norm C').fill('1');
      await page.getByLabel('ε limit per site').fill('10');
    }
    // Secure aggregation stays as the form offers it: on wherever the server supports it.
    const secAgg = page.getByLabel('Mask updates so the aggregator only sees their sum');
    const masked = (await secAgg.isEnabled()) && (await secAgg.isChecked());
    await shot(page, '04-new-federation-filled');
    await page.getByRole('button', { name: 'Create federation' }).click();

    // Lands on the new federation's sites.
    await page.getByRole('heading', { name: fedName, level: 1 }).waitFor();
    fedId = /#\/federations\/([0-9a-f-]{36})\/sites/.exec(page.url())![1]!;
    await page.getByText('No sites enrolled yet.').waitFor();

    // Enrol two sites by public key: one approved right away, one approved from the list.
    const data = await loadCsv(DATASET, { label: 'diagnosis' });
    const shards = partitionIid(data, 2, 3);
    const sites: TestSite[] = [];
    for (const [i, approveNow] of [true, false].entries()) {
      const identity = generateIdentity();
      const name = `hospital-${i + 1}`;
      await page.getByLabel('Site name').fill(name);
      await page.getByLabel('Public key').fill(identity.publicKey);
      await page.getByLabel('Approve right away').setChecked(approveNow);
      await page.getByRole('button', { name: 'Enrol site' }).click();
      await page.locator(`tr[data-site="${name}"]`).waitFor();
      sites.push({ name, identity, siteId: '', data: shards[i]! });
    }
    const row = (name: string) => page.locator(`tr[data-site="${name}"]`);
    await expect.poll(() => row('hospital-2').locator('.badge').textContent()).toBe('pending');
    await page.getByRole('button', { name: 'Approve hospital-2' }).click();
    await expect.poll(() => row('hospital-2').locator('.badge').textContent()).toBe('approved');
    expect(await row('hospital-1').getByTestId('connection').textContent()).toBe('offline');
    await shot(page, '05-sites-approved');

    // Real client nodes log in: the connection column turns live, pushed by the server.
    // Two sites: their policies allow secure sums of two.
    const policy = parsePolicy({ minSitesPerSum: 2 });
    for (const s of sites) nodes.push((await startNode(agg, fedId, s, { policy })).node);
    for (const s of sites) {
      await expect
        .poll(() => row(s.name).getByTestId('connection').textContent())
        .toBe('connected');
    }
    await shot(page, '06-sites-connected');

    // Keyboard: the tab bar follows the arrow keys.
    await page.locator('nav.tabs a[data-tab="sites"]').focus();
    await page.keyboard.press('ArrowRight');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-tab'))).toBe(
      'rounds',
    );
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Run rounds' }).waitFor();
    await page.getByText('No round is running.').waitFor();

    // Start two rounds now, then watch from the metrics tab.
    await page.getByLabel('Rounds to run now').fill('2');
    await page.getByRole('button', { name: 'Start', exact: true }).click();
    await page.getByTestId('live-round').and(page.locator('[data-phase]')).waitFor();
    // (The first round also has a feature-statistics stage, shown while it runs.)
    const stages = (await page.locator('ol.stages li').allTextContents()).filter(
      (x) => x !== 'Feature statistics',
    );
    expect(stages).toEqual(
      masked
        ? [
            'Selecting sites',
            'Advertising keys',
            'Sharing secrets',
            'Collecting updates',
            'Unmasking',
            'Evaluating',
            'Committed',
          ]
        : ['Selecting sites', 'Collecting updates', 'Evaluating', 'Committed'],
    );
    await shot(page, '07-round-live');
    await page.locator('nav.tabs a[data-tab="metrics"]').click();
    const accuracyPoints = page.locator(
      '[data-chart="Accuracy and AUC by round"] [data-series="Accuracy"] circle',
    );
    // Round 2 may already be committed when the tab opens (fast rounds): at least round 1's point.
    await expect.poll(() => accuracyPoints.count(), { timeout: 90_000 }).toBeGreaterThanOrEqual(1);
    await shot(page, '08-metrics-after-round-1');
    await expect.poll(() => accuracyPoints.count(), { timeout: 90_000 }).toBe(2);
    // The chart's numbers are the rounds' evaluated metrics.
    await page.getByText('Show data').first().click();
    const charted = await page
      .locator('[data-chart="Accuracy and AUC by round"] tbody tr')
      .evaluateAll((trs) => trs.map((tr) => tr.querySelector('td')!.textContent));
    const { rounds } = (await (
      await fetch(`${agg.url}/api/v1/federations/${fedId}/rounds`, {
        headers: { authorization: `Bearer ${adminToken}` },
      })
    ).json()) as { rounds: Array<{ metrics: { evaluation: { accuracy: number } } }> };
    expect(charted).toEqual(rounds.map((r) => r.metrics.evaluation.accuracy.toFixed(3)));
    await shot(page, '09-metrics');

    // The rounds tab shows both rounds committed and the run completed.
    await page.locator('nav.tabs a[data-tab="rounds"]').click();
    await expect
      .poll(() => page.locator('table[aria-label="Rounds"] tbody tr .badge').allTextContents())
      .toEqual(['committed', 'committed']);
    await expect
      .poll(() => page.getByTestId('live-round').getAttribute('data-state'))
      .toBe('committed');

    // A nightly schedule in Berlin time; pause and resume it.
    await page.getByText('Add a schedule').click();
    await page.getByLabel('Preset').selectOption({ label: 'Every night at 02:00 (0 2 * * *)' });
    expect(await page.getByLabel('Time zone').inputValue()).toBe('Europe/Berlin');
    await page.getByLabel('Rounds per trigger').fill('2');
    await page.getByRole('button', { name: 'Add schedule' }).click();
    const schedule = page.locator('table[aria-label="Schedules"] tbody tr').first();
    await schedule.getByText('every day at 02:00').waitFor();
    await schedule.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => schedule.locator('.badge').textContent()).toBe('paused');
    await schedule.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => schedule.locator('.badge').textContent()).toBe('active');
    await shot(page, '10-rounds-and-schedules');

    // Privacy: cumulative epsilon per site against its limit, and the forecast.
    await page.locator('nav.tabs a[data-tab="privacy"]').click();
    const privacy = page.locator(
      '[data-chart="Cumulative ε by round"], .state.error, .state.empty',
    );
    await privacy.first().waitFor();
    await shot(page, '11-privacy');

    await page.locator('nav.tabs a[data-tab="overview"]').click();
    await page.getByText('Rounds committed').waitFor();
    await shot(page, '12-overview');

    await page.goto(`${agg.url}/#/federations`);
    await page.getByRole('link', { name: fedName }).waitFor();
    await shot(page, '13-federations');
    expect(pageErrors).toEqual([]);
  }, 240_000);

  it("admin: creates a fedadam federation with settings from the registry's schema and sees it listed with its strategy", async () => {
    const page = await newPage();
    await signIn(page, adminToken);
    await page.goto(`${agg.url}/#/federations/new`);
    await page.getByRole('heading', { name: 'New federation' }).waitFor();
    const name = `adaptive-${Math.random().toString(36).slice(2, 6)}`;
    await page.getByLabel('Name').fill(name);
    await page.getByLabel('Kind').selectOption('logistic');
    const strategy = page.getByLabel('Strategy', { exact: true });
    // The drop-down is the registry, read from GET /api/v1/strategies.
    await expect
      .poll(() =>
        strategy.locator('option').evaluateAll((o) => o.map((x) => x.getAttribute('value'))),
      )
      .toEqual(strategyNames());
    // A robust rule is refused while secure aggregation is on, before anything is sent.
    const secAgg = page.getByLabel('Mask updates so the aggregator only sees their sum');
    if ((await secAgg.isEnabled()) && (await secAgg.isChecked())) {
      await strategy.selectOption('median');
      await page.getByRole('button', { name: 'Create federation' }).click();
      await expect
        .poll(() => page.locator('.field-error:visible').allTextContents())
        .toEqual([expect.stringMatching(/^median compares each site's update/)]);
    }
    await strategy.selectOption('fedadam');
    await expect
      .poll(() => page.getByTestId('strategy-summary').textContent())
      .toMatch(/^FedAdam \(Reddi et al\. 2021\)/);
    await page.getByLabel('Strategy settings (JSON)').fill('{ "serverLearningRate": 0.05 }');
    await shot(page, '14-new-federation-fedadam');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await page.getByRole('heading', { name, level: 1 }).waitFor();
    const id = /#\/federations\/([0-9a-f-]{36})\//.exec(page.url())![1]!;

    await page.goto(`${agg.url}/#/federations/${id}/overview`);
    await page
      .getByText('fedadam (beta1 0.9, beta2 0.99, serverLearningRate 0.05, tau 0.001)')
      .waitFor();
    await page.goto(`${agg.url}/#/federations`);
    const row = page.locator('tr', { has: page.getByRole('link', { name }) });
    await expect.poll(() => row.locator('td').nth(3).textContent()).toBe('fedadam');
    await shot(page, '15-federations-fedadam');
    expect(pageErrors).toEqual([]);
  });

  it('auditor: sees everything read-only; the server refuses what the UI does not offer', async () => {
    expect(fedId).not.toBe('');
    const page = await newPage();
    await signIn(page, auditorToken);
    expect(await page.getByTestId('role').textContent()).toBe('auditor');
    await page.getByRole('link', { name: fedName }).waitFor();
    expect(await page.getByRole('link', { name: 'New federation' }).count()).toBe(0);
    await shot(page, '20-auditor-federations');

    await page.getByRole('link', { name: fedName }).click();
    await page.locator('nav.tabs a[data-tab="sites"]').click();
    await page.locator('tr[data-site="hospital-1"]').waitFor();
    expect(await page.getByRole('heading', { name: 'Enrol a site' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /Approve|Revoke/ }).count()).toBe(0);
    await page.locator('nav.tabs a[data-tab="rounds"]').click();
    await page.getByRole('heading', { name: 'Round history' }).waitFor();
    expect(await page.getByLabel('Rounds to run now').count()).toBe(0);
    expect(await page.getByText('Add a schedule', { exact: true }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /Pause|Resume|Delete/ }).count()).toBe(0);
    await shot(page, '21-auditor-rounds');

    await page.goto(`${agg.url}/#/federations/new`);
    await page.getByText('Only admins can create federations.').waitFor();
    await shot(page, '22-auditor-new-federation-refused');

    // A UI check alone is not enough: the server refuses the same requests for this token.
    const attempts = await page.evaluate(
      async ([token, id]) => {
        const call = async (method: string, path: string, body?: unknown) => {
          const res = await fetch(path, {
            method,
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          return [
            res.status,
            ((await res.json()) as { error?: { message: string } }).error?.message,
          ];
        };
        return [
          await call('POST', '/api/v1/federations', {
            name: 'x',
            modelSpec: { kind: 'logistic', inputDim: 2 },
          }),
          await call('POST', `/api/v1/federations/${id}/runs`, { rounds: 1 }),
          await call('POST', `/api/v1/federations/${id}/schedules`, {
            cron: '0 2 * * *',
            timeZone: 'UTC',
          }),
          await call('POST', `/api/v1/federations/${id}/sites`, { name: 'x', publicKey: 'x' }),
          await call('POST', '/api/v1/tokens', { role: 'admin' }),
        ];
      },
      [auditorToken, fedId] as const,
    );
    for (const [status, message] of attempts) {
      expect(status).toBe(403);
      expect(message).toMatch(/needs the admin role; the token is auditor/);
    }
    expect(pageErrors).toEqual([]);
  }, 60_000);

  // The ledger endpoints come with differential privacy; without them these tests say so and skip.
  describe('the ledger (auditor)', () => {
    let ledgerServed = true;

    beforeAll(async () => {
      const probe = await fetch(`${agg.url}/api/v1/federations/${fedId}/ledger`, {
        headers: { authorization: `Bearer ${auditorToken}` },
      });
      ledgerServed = probe.status !== 404;
      if (!ledgerServed) {
        console.warn(
          '[ledger browser tests skipped] GET /api/v1/federations/:id/ledger answers 404 on this aggregator',
        );
      }
    });

    it('auditor: opens the ledger, filters and pages it, verifies it and exports it as CSV', async (ctx) => {
      if (!ledgerServed) ctx.skip();
      const page = await newPage();
      await signIn(page, auditorToken);
      await page.goto(`${agg.url}/#/federations/${fedId}/ledger`);
      await page.getByRole('heading', { name: 'Epsilon ledger' }).waitFor();
      const rows = page.locator('table[aria-label="Ledger entries"] tbody tr');
      // 2 sites x 2 rounds x (the update, and the evaluation counts inside a secure sum)
      await expect.poll(() => rows.count()).toBe(8);
      expect(await page.locator('.pager').textContent()).toContain('Entries 1–8 of 8');
      expect(await page.locator('td.mechanism[data-release="evaluation"]').count()).toBe(4);
      await shot(page, '30-ledger');

      await page.getByLabel('Site', { exact: true }).selectOption({ label: 'hospital-2' });
      await page.getByLabel('Round', { exact: true }).fill('2');
      await page.getByRole('button', { name: 'Apply filters' }).click();
      await expect.poll(() => rows.count()).toBe(2);
      expect(await rows.first().locator('td').nth(1).textContent()).toBe('hospital-2');
      expect(page.url()).toMatch(/ledger\?site=[0-9a-f-]{36}&round=2$/);

      await page.getByRole('button', { name: 'Verify ledger' }).click();
      const result = page.getByTestId('verify-result');
      await result.waitFor();
      expect(await result.locator('h3').textContent()).toBe('✓ The ledger verifies');
      const checks = await result.locator('.checks li').count();
      expect(checks).toBeGreaterThan(0);
      expect(await result.locator('.checks li.bad').count()).toBe(0);
      await shot(page, '31-ledger-verified');

      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Export CSV' }).click(),
      ]);
      expect(download.suggestedFilename()).toBe(`ledger-${fedName}.csv`);
      const path = await download.path();
      const csv = (await import('node:fs')).readFileSync(path, 'utf8').trim().split('\n');
      expect(csv).toHaveLength(3); // header + the two filtered entries
      expect(pageErrors).toEqual([]);
    }, 60_000);
  });
});
