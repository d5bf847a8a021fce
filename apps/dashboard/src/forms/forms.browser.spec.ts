/**
 * Component tests of the forms in headless Chromium: the real view code, bundled with esbuild as the
 * aggregator bundles it, rendered into a blank page, driven with the keyboard and mouse.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { strategyCatalog } from '@confide/federated';
import { namedStrategy, type Capabilities } from '../api';
import {
  describeWithBrowser,
  launchChromium,
  screenshotPath,
} from '../../../../test/support/browser';

const HERE = fileURLToPath(new URL('.', import.meta.url));

const ENTRY = `
import { ApiError } from '../api';
import { federationForm } from './federation-form.view';
import { siteForm } from './site-form.view';
import { scheduleForm, startRoundsForm } from './schedule-form.view';
const w = window;
w.submitted = [];
w.reject = null;
const submit = (body) => {
  w.submitted.push(body);
  return w.reject ? Promise.reject(new ApiError(400, 'VALIDATION_FAILED', w.reject)) : Promise.resolve();
};
w.render = (which, caps) => {
  const root = document.getElementById('root');
  const el =
    which === 'federation' ? federationForm({ caps, submit }) :
    which === 'site' ? siteForm({ submit: (b, approve) => submit({ ...b, approve }) }) :
    which === 'schedule' ? scheduleForm({ submit, timeZone: 'Europe/Berlin' }) :
    startRoundsForm({ submit });
  root.replaceChildren(el);
};
`;

describeWithBrowser('dashboard forms in Chromium', () => {
  let browser: Browser;
  let page: Page;
  let js = '';
  let css = '';

  beforeAll(async () => {
    const esbuild = await import('esbuild');
    const out = await esbuild.build({
      stdin: { contents: ENTRY, resolveDir: HERE, loader: 'ts' },
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      logLevel: 'silent',
    });
    js = out.outputFiles[0]!.text;
    css = await readFile(`${HERE}../styles.css`, 'utf8');
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    await page.setContent(
      '<!doctype html><html><body><div class="page narrow" id="root"></div></body></html>',
    );
    await page.addStyleTag({ content: css });
    await page.addScriptTag({ content: js, type: 'module' });
    await page.waitForFunction(() => 'render' in window);
  });

  const render = (
    which: string,
    caps: Capabilities = {
      dp: false,
      secureAggregation: false,
      strategies: [namedStrategy('fedavg')],
    },
  ) => page.evaluate(([w, c]) => (window as any).render(w, c), [which, caps] as const);
  const submitted = () =>
    page.evaluate(() => (window as any).submitted as Array<Record<string, unknown>>);
  const rejectWith = (message: string | null) =>
    page.evaluate((m) => ((window as any).reject = m), message);

  it('new federation: shows client-side errors next to the fields and focuses the first', async () => {
    await render('federation');
    await page.getByLabel('Input features').fill('0');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').allTextContents())
      .toEqual(['required', 'must be at least 1']);
    expect(await page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('name');
    expect(await page.getByLabel('Name').getAttribute('aria-invalid')).toBe('true');
    expect(await submitted()).toEqual([]);
    // Typing into a field clears its error.
    await page.keyboard.type('breast-cancer');
    expect(await page.locator('.field-error:visible').count()).toBe(1);
    await page.screenshot({
      path: screenshotPath('component-federation-form-errors'),
      fullPage: true,
    });
  });

  it("new federation: shows the server's 400 message verbatim and on the field it names", async () => {
    await render('federation');
    await page.getByLabel('Name').fill('bc');
    await page.getByLabel('Kind').selectOption('json');
    await page.getByLabel('Model spec (JSON)').fill('{ "kind": "cnn", "inputDim": 30 }');
    const message = 'invalid modelSpec: spec.kind: must be "logistic" or "mlp", got "cnn"';
    await rejectWith(message);
    // Enter in a text field submits, as in any form.
    await page.getByLabel('Name').press('Enter');
    await expect.poll(() => page.locator('.server-message').textContent()).toBe(message);
    expect(await page.getByRole('alert').first().textContent()).toContain(message);
    expect(await page.locator('.field-error:visible').allTextContents()).toEqual([
      'must be "logistic" or "mlp", got "cnn"',
    ]);
    expect((await submitted())[0]).toMatchObject({
      name: 'bc',
      modelSpec: { kind: 'cnn', inputDim: 30 },
    });
    await page.screenshot({
      path: screenshotPath('component-federation-form-server-error'),
      fullPage: true,
    });
  });

  it('new federation: privacy and secure-aggregation settings are disabled and not sent when the server does not offer them', async () => {
    await render('federation');
    expect(await page.getByLabel('Protection level').isDisabled()).toBe(true);
    expect(
      await page.getByLabel('Mask updates so the aggregator only sees their sum').isDisabled(),
    ).toBe(true);
    await expect.poll(() => page.getByText('does not offer differential privacy').count()).toBe(1);
    await page.getByLabel('Name').fill('plain');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect.poll(async () => (await submitted()).length).toBe(1);
    const body = (await submitted())[0]!;
    expect(body).not.toHaveProperty('dp');
    expect(body).not.toHaveProperty('secureAggregation');
  });

  it('new federation: sends site-level DP and secure aggregation when offered, after checking them', async () => {
    await render('federation', {
      dp: true,
      secureAggregation: true,
      strategies: [namedStrategy('fedavg')],
    });
    await page.getByLabel('Name').fill('private');
    expect(await page.getByLabel('Noise multiplier z').isVisible()).toBe(false);
    await page.getByLabel('Protection level').selectOption('site');
    await page.getByLabel('δ').fill('2');
    await page.getByLabel('Mask updates so the aggregator only sees their sum').check();
    await page.getByLabel('Neighbour graph').selectOption('harary');
    await page.getByLabel('Degree k').fill('4');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').allTextContents())
      .toEqual(['must be less than 1']);
    await page.getByLabel('δ').fill('1e-5');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect.poll(async () => (await submitted()).length).toBe(1);
    expect((await submitted())[0]).toMatchObject({
      dp: { level: 'site', noiseMultiplier: 1.1, clipNorm: 1, delta: 1e-5, epsilonLimit: 8 },
      secureAggregation: { enabled: true, graph: 'harary', k: 4, threatModel: 'semi-honest' },
    });
    await page.screenshot({ path: screenshotPath('component-federation-form-dp'), fullPage: true });
  });

  it("new federation: offers the registry's strategies with their summaries and settings, refusing a robust one with secure aggregation", async () => {
    await render('federation', {
      dp: false,
      secureAggregation: true,
      strategies: strategyCatalog(),
    });
    const strategy = page.getByLabel('Strategy', { exact: true });
    const settings = page.getByLabel('Strategy settings (JSON)');
    expect(await strategy.locator('option').allTextContents()).toEqual(
      strategyCatalog().map((s) => (s.name === 'fedavg' ? 'FedAvg' : s.name)),
    );
    // FedAvg takes no settings: the field is hidden.
    expect(await settings.isVisible()).toBe(false);
    await strategy.selectOption('median');
    await expect
      .poll(() => page.getByTestId('strategy-summary').textContent())
      .toMatch(/^Coordinate-wise median .* only for federations without secure aggregation\.$/);
    await page.getByLabel('Name').fill('robust');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').allTextContents())
      .toEqual([expect.stringMatching(/^median compares each site's update/)]);
    expect(await submitted()).toEqual([]);
    // fedadam works on the sum; its settings are checked against its schema before sending.
    await strategy.selectOption('fedadam');
    expect(await settings.getAttribute('placeholder')).toContain('"serverLearningRate":0.1');
    await settings.fill('{ "serverLearningRate": 0 }');
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').allTextContents())
      .toEqual(['serverLearningRate: must be greater than 0']);
    await settings.fill('{ "serverLearningRate": 0.05 }');
    const refusal = 'invalid configuration for strategy "fedadam": beta1: Too big';
    await rejectWith(refusal);
    await page.getByRole('button', { name: 'Create federation' }).click();
    await expect.poll(() => page.locator('.server-message').textContent()).toBe(refusal);
    expect(await page.locator('.field-error:visible').allTextContents()).toEqual([refusal]);
    expect((await submitted())[0]).toMatchObject({
      strategy: 'fedadam',
      strategyConfig: { serverLearningRate: 0.05 },
      secureAggregation: { enabled: true },
    });
    await page.screenshot({
      path: screenshotPath('component-federation-form-strategy'),
      fullPage: true,
    });
  });

  it('enrol a site: refuses a malformed key and sends a pasted one without its line breaks', async () => {
    await render('site');
    await page.getByLabel('Site name').fill('hospital-1');
    await page.getByLabel('Public key').fill('not-a-key');
    await page.getByRole('button', { name: 'Enrol site' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').textContent())
      .toMatch(/not an Ed25519 public key/);
    const key = 'DTJbVqLdwWuoH0v6JCKjENGZGV7M8w4wp1mxm5zm9z0=';
    await page.getByLabel('Public key').fill(`${key.slice(0, 22)}\n${key.slice(22)}`);
    await page.getByRole('button', { name: 'Enrol site' }).click();
    await expect.poll(async () => (await submitted()).length).toBe(1);
    expect((await submitted())[0]).toEqual({ name: 'hospital-1', publicKey: key, approve: true });
    // The form is cleared for the next site.
    await expect.poll(() => page.getByLabel('Site name').inputValue()).toBe('');
  });

  it("schedule: explains the cron, fills presets, and points the server's message at its field", async () => {
    await render('schedule');
    expect(await page.getByText('Runs every day at 02:00 (Europe/Berlin).').count()).toBe(1);
    await page.getByLabel('Cron expression').fill('0 2 * *');
    await page.getByRole('button', { name: 'Add schedule' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').textContent())
      .toBe('5 fields: minute hour day-of-month month day-of-week (got 4)');
    await page.getByLabel('Preset').selectOption({ label: 'Weekdays at 06:30 (30 6 * * 1-5)' });
    expect(await page.getByLabel('Cron expression').inputValue()).toBe('30 6 * * 1-5');
    await page.getByLabel('Rounds per trigger').fill('3');
    await page.getByLabel('Ends (optional)').fill('2027-01-31T00:00');
    await rejectWith(
      'unknown time zone "Europe/Berlin"; use an IANA name such as Europe/Berlin or UTC',
    );
    await page.getByRole('button', { name: 'Add schedule' }).click();
    await expect
      .poll(() => page.locator('.field-error:visible').textContent())
      .toMatch(/^unknown time zone/);
    expect((await submitted())[0]).toEqual({
      cron: '30 6 * * 1-5',
      timeZone: 'Europe/Berlin',
      roundsPerTrigger: 3,
      endsAt: '2027-01-30T23:00:00.000Z',
    });
    await page.screenshot({ path: screenshotPath('component-schedule-form'), fullPage: true });
  });

  it('start rounds now: checks the number', async () => {
    await render('start');
    await page.getByLabel('Rounds to run now').fill('0');
    await page.getByLabel('Rounds to run now').press('Enter');
    await expect
      .poll(() => page.locator('.field-error:visible').textContent())
      .toBe('a whole number, at least 1');
    await page.getByLabel('Rounds to run now').fill('2');
    await page.getByLabel('Rounds to run now').press('Enter');
    await expect.poll(async () => (await submitted()).length).toBe(1);
    expect((await submitted())[0]).toBe(2);
  });
});
