/**
 * Real Chromium for tests (Debian's `chromium`, driven by playwright-core): where it is, a
 * `describeChromium` that runs a suite only when it exists — under CI (`CI` set) a missing
 * browser is a failing test, elsewhere a visible skip — and a launcher with the flags that keep
 * Chromium from reaching for the (closed) network.
 *
 * @example
 *   describeChromium('the Integration page', () => {
 *     let browser: Browser;
 *     beforeAll(async () => { browser = await launchChromium(); });
 *     afterAll(() => browser.close());
 *     it('…', async () => { const page = await browser.newPage(); await page.goto(url); await shot(page, '01-sign-in'); });
 *   });
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { describe, it } from 'vitest';
import { ROOT } from './process.js';

/** $CHROMIUM_PATH, else Debian's /usr/bin/chromium. */
export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] || '/usr/bin/chromium';

/** Where screenshots go: test-artifacts/ (gitignored) under the repository. */
export const ARTIFACTS = join(ROOT, 'test-artifacts');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_PATH);
}

/** `describe` when Chromium is installed; otherwise a failing test under CI, a visible skip elsewhere. */
export function describeChromium(name: string, fn: () => void): void {
  if (chromiumAvailable()) {
    describe(name, fn);
    return;
  }
  if (process.env['CI']) {
    describe(name, () => {
      it('needs Chromium (CI is set, so this fails instead of skipping)', () => {
        throw new Error(`Chromium is not installed at ${CHROMIUM_PATH}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
      });
    });
    return;
  }
  console.warn(`\n[describeChromium] SKIPPED "${name}": no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium, or set CHROMIUM_PATH)\n`);
  describe.skip(name, fn);
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** Saves a full-page screenshot as test-artifacts/<dir>/<name>.png; returns the path. */
export async function shot(page: Page, dir: string, name: string): Promise<string> {
  const folder = join(ARTIFACTS, dir);
  await mkdir(folder, { recursive: true });
  const file = join(folder, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
