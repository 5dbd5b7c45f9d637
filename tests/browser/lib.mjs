// What every browser step shares: the environment, one headless Chromium,
// pages in their own contexts, waits on page state (never on time), sign-in,
// the step list and its runner, and the RESULT line that tests/api/browser.rs
// checks the database against.

import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
};

export const BASE = env('BASE_URL');
export const PASSWORD = env('PASSWORD');
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Generous: the machine running this may be busy.
export const WAIT = 20_000;

mkdirSync(SHOTS, { recursive: true });
// A failure's screenshots belong to that run only.
for (const f of readdirSync(SHOTS)) if (f.startsWith('failure-')) rmSync(`${SHOTS}/${f}`);
export const result = {};

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // No sandbox as root in CI; no background traffic on a closed network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const pages = [];
export async function newPage(options = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 }, ...options });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => console.error(`page error on ${page.url()}: ${e.message}`));
  pages.push(page);
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Waits until the text of `selector` matches `re`. */
export async function waitText(page, selector, re, timeout = WAIT) {
  try {
    await page.waitForFunction(([sel, src, flags]) => {
      const el = document.querySelector(sel);
      return !!el && new RegExp(src, flags).test(el.textContent);
    }, [selector, re.source, re.flags], { timeout });
  } catch (e) {
    const text = await page.locator(selector).first().textContent().catch(() => '(absent)');
    throw new Error(`${selector} never matched ${re} on ${page.url()}; it reads: ${text}`);
  }
  return page.locator(selector).first().textContent();
}

export async function signIn(page, username, next = '/') {
  await page.goto(`${BASE}/login?next=${encodeURIComponent(next)}`);
  // With the keyboard only: the form must work without a mouse.
  await page.locator('#username').focus();
  await page.keyboard.type(username);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${BASE}${next}`);
  await waitText(page, '#nav', new RegExp(`${username}\\s*Sign out`));
}

export async function apiLogin(username) {
  const r = await fetch(`${BASE}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  assert.equal(r.status, 200, `login of ${username}`);
  return (await r.json()).access_token;
}

const steps = [];
export const step = (name, fn) => steps.push([name, fn]);

/** Runs the steps in order, stops at the first failure (screenshots of every
 * page), prints the RESULT line and exits. */
export async function run() {
  let failed = false;
  for (const [name, fn] of steps) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed = true;
      console.error(`FAIL ${name}: ${e.stack || e}`);
      for (const [i, p] of pages.entries()) {
        await p.screenshot({ path: `${SHOTS}/failure-${i}.png`, fullPage: true }).catch(() => {});
      }
      break;
    }
  }
  await browser.close();
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(failed ? 1 : 0);
}
