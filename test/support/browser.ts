import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import type { Browser } from 'playwright-core';

/** Debian's chromium; the tests never download a browser. */
export const CHROMIUM = process.env['CONFIDE_CHROMIUM'] ?? '/usr/bin/chromium';

export const hasChromium = existsSync(CHROMIUM);

/** Where the browser tests leave their screenshots. */
export const SCREENSHOTS = fileURLToPath(
  new URL('../../test-output/screenshots/', import.meta.url),
);

/**
 * `describe` when Chromium is installed; otherwise `describe.skip`, saying on the console which tests
 * were skipped and why (`.ci/run` installs Chromium, so CI always runs them).
 */
export function describeWithBrowser(name: string, fn: () => void): void {
  if (hasChromium) {
    describe(name, fn);
    return;
  }
  console.warn(
    `[browser tests skipped] "${name}": no Chromium at ${CHROMIUM}. ` +
      'Install it with `apt-get install -y chromium` (as .ci/run does) to run the dashboard tests.',
  );
  describe.skip(name, fn);
}

/** Headless Chromium with the flags that keep it off the network and quiet. */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A screenshot path under test-output/screenshots. */
export function screenshotPath(name: string): string {
  return `${SCREENSHOTS}${name}.png`;
}
