// The shop's pages in headless Chromium against a real server and database.
// Run by tests/api/browser.rs, which starts the server, makes the users and
// sales named in the environment, and afterwards checks the database against
// the RESULT line printed here. Every wait is on page state, never on time.
// The paying steps (holds, the test processor's page, orders) are in
// payments.mjs.

import assert from 'node:assert/strict';
import {
  env, BASE, PASSWORD, result, newPage, shot, waitText, signIn, apiLogin, step, run,
} from './lib.mjs';
import { paymentSteps } from './payments.mjs';

const USER1 = env('USER1');
const USER2 = env('USER2');
const ADMIN = env('ADMIN');
const SELLER = env('SELLER');
const SALE_SOON = env('SALE_SOON');
const SALE_LAST = env('SALE_LAST');
const SALE_SPARE = env('SALE_SPARE');
const PRODUCT_NAME = env('PRODUCT_NAME');
const NEW_PRODUCT_NAME = env('NEW_PRODUCT_NAME');
const NEW_USER = env('NEW_USER');
const START_SECS = Number(env('START_SECS'));

// Reschedules a sale, as the admin, to start `secs` from now by the shop's
// clock.
async function startSoon(saleId, secs) {
  const json = { 'content-type': 'application/json' };
  const login = await fetch(`${BASE}/api/v1/auth/login`, {
    method: 'POST', headers: json, body: JSON.stringify({ username: ADMIN, password: PASSWORD }),
  }).then((r) => r.json());
  const sale = await fetch(`${BASE}/api/v1/sales/${saleId}`).then((r) => r.json());
  const startsAt = new Date(Date.parse(sale.server_time) + secs * 1000).toISOString();
  const res = await fetch(`${BASE}/api/v1/sales/${saleId}`, {
    method: 'PATCH',
    headers: { ...json, authorization: `Bearer ${login.access_token}` },
    body: JSON.stringify({ starts_at: startsAt }),
  });
  assert.equal(res.status, 200, `rescheduling the sale: ${await res.text()}`);
}

// --- the shopper: countdown on the shop's clock, buy, already bought, orders ---
let user1;
step('user1 signs in, waits for the countdown and buys', async () => {
  user1 = await newPage();
  // The browser's clock is ten minutes slow: a countdown that trusted it
  // would still be counting when the sale opens.
  await user1.context().addInitScript(() => {
    const realNow = Date.now.bind(Date);
    Date.now = () => realNow() - 600_000;
  });
  await signIn(user1, USER1, `/sales/${SALE_SOON}`);
  await waitText(user1, '#sale-state', /^Upcoming$/);
  assert.equal(await user1.locator('#buy').isDisabled(), true, 'buy is closed before the start');
  // The sale was scheduled an hour ahead; with the page open, an admin moves
  // its start to START_SECS from now. The page follows without a reload,
  // however long the machine took to get here.
  await user1.evaluate(() => { window.notReloaded = true; });
  await startSoon(SALE_SOON, START_SECS);
  const left = await waitText(user1, '#countdown', /^00:\d\d$/);
  const [mm, ss] = left.split(':').map(Number);
  const secs = mm * 60 + ss;
  assert.ok(secs > 0 && secs <= START_SECS + 1,
    `countdown ${left} should be within the ${START_SECS} s the sale was scheduled ahead`);
  await shot(user1, 'sale-countdown');
  // Opens at the start, without a reload.
  await user1.waitForFunction(() => !document.querySelector('#buy').disabled,
    null, { timeout: (START_SECS + 20) * 1000 });
  assert.equal(await user1.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  await waitText(user1, '#sale-state', /^Live$/);
  await user1.locator('#buy').click();
  await waitText(user1, '#result', /Bought!/);
  const number = (await user1.locator('#result .order-number').textContent()).trim();
  assert.match(number, /^\d{4}-\d{2}-\d{6}$/);
  result.user1_orders = [number];
  // The stock shown includes this order.
  await waitText(user1, '#stock', /^\d+ of \d+ left$|^Sold out$/);
  await user1.waitForFunction(() => !/^(\d+) of \1 left$/.test(document.querySelector('#stock').textContent));
  await shot(user1, 'sale-page');
});

step('a second buy says already bought', async () => {
  await user1.locator('#buy').click();
  await waitText(user1, '#result', /Already bought/);
});

step('a purchase answered 429 says slow down, with the wait and a retry', async () => {
  await user1.route('**/api/v1/sales/*/purchase', (route) => route.fulfill({
    status: 429,
    headers: { 'retry-after': '3', 'content-type': 'application/json' },
    body: JSON.stringify({ error: { code: 'rate_limited', message: 'too many requests' } }),
  }));
  // By keyboard: focus the button and press Enter.
  await user1.locator('#buy').focus();
  await user1.keyboard.press('Enter');
  const text = await waitText(user1, '#result', /Slow down/);
  assert.match(text, /retry in 3 s/);
  assert.equal(await user1.locator('#result button.retry').count(), 1);
  await user1.unroute('**/api/v1/sales/*/purchase');
  // Retry reaches the real shop again, which still says already bought.
  await user1.locator('#result button.retry').click();
  await waitText(user1, '#result', /Already bought/);
});

step('my orders lists the order, refreshing an expired access token once', async () => {
  // An access token the shop no longer accepts: the page must refresh it
  // with the refresh token and carry on, not send the shopper to sign in.
  const stale = await user1.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('flashsale.session'));
    s.access_token = 'expired.not-a.token';
    localStorage.setItem('flashsale.session', JSON.stringify(s));
    return s.refresh_token;
  });
  await user1.goto(`${BASE}/orders`);
  await waitText(user1, '#orders', new RegExp(result.user1_orders[0]));
  await waitText(user1, '#orders', new RegExp(PRODUCT_NAME));
  const fresh = await user1.evaluate(() => JSON.parse(localStorage.getItem('flashsale.session')));
  assert.notEqual(fresh.refresh_token, stale, 'the refresh token was rotated');
  assert.notEqual(fresh.access_token, 'expired.not-a.token');
});

// --- sold out reaches another open page without a reload ---
step('signing in goes only to pages of this shop, whatever next says', async () => {
  const page = await newPage();
  // Sent as they are: a backslash and a tab that browsers read as a slash or
  // drop, another origin, a scheme.
  for (const next of ['/%5Cevil.example', '/%09/evil.example', '/%5C%5Cevil.example',
    '//evil.example', '/%0A/evil.example', 'https://evil.example/', 'javascript:alert(1)']) {
    await page.goto(`${BASE}/login?next=${next}`);
    await page.locator('#username').fill(USER2);
    await page.locator('#password').fill(PASSWORD);
    await page.locator('#password').press('Enter');
    await page.waitForURL(`${BASE}/`);
    await waitText(page, '#nav', new RegExp(`${USER2}\\s*Sign out`));
  }
});

step('a sale that sells out shows sold out on another open page', async () => {
  const watcher = await newPage();
  await signIn(watcher, USER2, `/sales/${SALE_LAST}`);
  await waitText(watcher, '#stock', /^1 of 1 left$/);
  await waitText(watcher, '#live', /Live updates on/);
  assert.equal(await watcher.locator('#buy').isDisabled(), false);
  await watcher.evaluate(() => { window.notReloaded = true; });

  await user1.goto(`${BASE}/sales/${SALE_LAST}`);
  await user1.locator('#buy').click();
  await waitText(user1, '#result', /Bought!/);
  result.user1_orders.push((await user1.locator('#result .order-number').textContent()).trim());

  await waitText(watcher, '#stock', /^Sold out$/);
  await waitText(watcher, '#sale-state', /^Sold out$/);
  assert.equal(await watcher.locator('#buy').isDisabled(), true);
  assert.equal(await watcher.evaluate(() => window.notReloaded), true, 'no reload');
  await shot(watcher, 'sale-sold-out');
});

// --- a customer cannot reach the admin pages ---
step('a customer sees "not allowed" and no admin data', async () => {
  const page = await newPage();
  await signIn(page, USER2);
  for (const path of ['/admin', `/admin/sales/${SALE_SOON}`, '/admin/users']) {
    await page.goto(`${BASE}${path}`);
    await waitText(page, '#content', /Not allowed/);
    assert.equal(await page.locator('#sales, #stats, #users, #product-name').count(), 0, path);
  }
  // Even with the role forged in the browser, the API refuses and the page
  // still shows nothing.
  await page.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('flashsale.session'));
    s.user.role = 'admin';
    localStorage.setItem('flashsale.session', JSON.stringify(s));
  });
  for (const path of ['/admin/users', `/admin/sales/${SALE_SOON}`]) {
    await page.goto(`${BASE}${path}`);
    await waitText(page, '#content', /Not allowed/);
    assert.equal(await page.locator('#stats dd, #users td').count(), 0, path);
  }
  await shot(page, 'admin-not-allowed');
});

// --- the admin: product, schedule, reschedule, cancel, live view, users ---
let admin;
step('admin creates a product and schedules a sale that shoppers then see', async () => {
  admin = await newPage();
  await signIn(admin, ADMIN, '/admin');
  await admin.getByLabel('Name').fill(NEW_PRODUCT_NAME);
  await admin.getByLabel('Description').fill('Maps of the northern sky, hand-coloured.');
  await admin.getByLabel('Price', { exact: true }).fill('32.50');
  await admin.getByRole('button', { name: 'Create product' }).click();
  await waitText(admin, '#content', new RegExp(`Created “${NEW_PRODUCT_NAME}”`));
  // The new product is chosen in the schedule form; start in an hour.
  await admin.waitForFunction((name) => document.querySelector('#sale-product').selectedOptions[0]?.textContent.startsWith(name), NEW_PRODUCT_NAME);
  const [start, end] = await admin.evaluate(() => {
    const two = (n) => String(n).padStart(2, '0');
    const local = (d) => `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
    const t = new Date(Date.now() + 3600e3);
    return [local(t), local(new Date(t.getTime() + 7200e3))];
  });
  await admin.locator('#sale-start').fill(start);
  await admin.locator('#sale-end').fill(end);
  await admin.locator('#sale-stock').fill('50');
  await admin.getByRole('button', { name: 'Schedule sale' }).click();
  const msg = await waitText(admin, '#content', /Scheduled sale #\d+/);
  const id = Number(msg.match(/Scheduled sale #(\d+)/)[1]);
  result.new_sale_id = id;
  await waitText(admin, `tr[data-sale="${id}"]`, new RegExp(NEW_PRODUCT_NAME));

  const shopper = await newPage();
  await shopper.goto(`${BASE}/sales`);
  await waitText(shopper, 'section[aria-labelledby="h-upcoming"]', new RegExp(NEW_PRODUCT_NAME));
});

step('admin reschedules that sale', async () => {
  const id = result.new_sale_id;
  const row = admin.locator(`tr[data-sale="${id}"]`);
  await row.getByRole('button', { name: 'Reschedule' }).click();
  const newStart = await admin.evaluate(() => {
    const two = (n) => String(n).padStart(2, '0');
    const t = new Date(Date.now() + 2 * 3600e3);
    return `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())}T${two(t.getHours())}:${two(t.getMinutes())}`;
  });
  await row.getByLabel(`New start of #${id}`).fill(newStart);
  await row.getByRole('button', { name: 'Save' }).click();
  // The table reloads from the API: the row's window shows the new start.
  const expected = await admin.evaluate((v) => new Date(v).toISOString(), newStart);
  result.new_sale_starts_at = expected;
  await admin.waitForFunction(async ([sid, iso]) => {
    const s = await (await fetch(`/api/v1/sales/${sid}`)).json();
    return Date.parse(s.starts_at) === Date.parse(iso);
  }, [id, expected]);
  await waitText(admin, `tr[data-sale="${id}"]`, /Reschedule/);
});

step('admin cancels a sale', async () => {
  const row = admin.locator(`tr[data-sale="${SALE_SPARE}"]`);
  await row.getByRole('button', { name: 'Cancel' }).click();
  await admin.getByRole('button', { name: `Yes, cancel #${SALE_SPARE}` }).click();
  await waitText(admin, `tr[data-sale="${SALE_SPARE}"]`, /Cancelled/);
  await shot(admin, 'admin');
});

step('the admin live view refreshes by itself', async () => {
  await admin.goto(`${BASE}/admin/sales/${SALE_SOON}`);
  await waitText(admin, '#stats dd[data-key="sold"]', /^1$/);
  await waitText(admin, '#stats dd[data-key="buyers"]', /^1$/);
  await admin.evaluate(() => { window.notReloaded = true; });
  // Another shopper buys meanwhile (through the API).
  const token = await apiLogin(USER2);
  const r = await fetch(`${BASE}/api/v1/sales/${SALE_SOON}/purchase`, {
    method: 'POST', headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(r.status, 201, 'user2 buys');
  result.user2_order = (await r.json()).number;
  await waitText(admin, '#stats dd[data-key="sold"]', /^2$/);
  await waitText(admin, '#stats dd[data-key="buyers"]', /^2$/);
  await waitText(admin, '#stats dd[data-key="remaining"]', /^98$/);
  assert.equal(await admin.evaluate(() => window.notReloaded), true, 'no reload');
  await shot(admin, 'admin-live');
});

step('admin changes a user\'s role', async () => {
  await admin.goto(`${BASE}/admin/users`);
  const row = admin.locator(`tr[data-user="${USER2}"]`);
  await row.getByLabel(`Role of ${USER2}`).selectOption('seller');
  await row.getByRole('button', { name: 'Save role' }).click();
  await waitText(admin, `tr[data-user="${USER2}"]`, /Saved: seller/);
  await shot(admin, 'admin-users');
});

// --- the seller ---
step('the seller sees sell counts and revenue', async () => {
  const seller = await newPage();
  await signIn(seller, SELLER, '/seller');
  // user1 bought in two sales and user2 in one, all of this product.
  await waitText(seller, '#my-products', new RegExp(`${PRODUCT_NAME}.*3$`, 's'));
  await waitText(seller, '#revenue', /3 sold/);
  await shot(seller, 'seller');
});

// --- phone width, failures, register, sign out ---
step('pages fit a phone screen', async () => {
  const phone = await newPage({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
  for (const [path, ready] of [[`/sales/${SALE_SOON}`, '#stock'], ['/', 'section'], ['/orders', '#content'], ['/login', '#username']]) {
    await phone.goto(`${BASE}${path}`);
    await phone.locator(ready).first().waitFor();
    const [scroll, client] = await phone.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(scroll <= client, `${path} scrolls sideways on a phone: ${scroll} > ${client}`);
  }
  await phone.goto(`${BASE}/sales/${SALE_SOON}`);
  await waitText(phone, '#stock', /of 100 left/);
  await shot(phone, 'sale-phone');
});

step('a failed request says so and Retry recovers', async () => {
  const page = await newPage();
  let failures = 1;
  const activeSales = (url) => url.pathname === '/api/v1/sales' && url.searchParams.get('state') === 'active';
  await page.route(activeSales, (route) => {
    if (failures-- > 0) {
      return route.fulfill({
        status: 503,
        headers: { 'retry-after': '2', 'content-type': 'application/json' },
        body: JSON.stringify({ error: { code: 'busy', message: 'busy' } }),
      });
    }
    return route.continue();
  });
  await page.goto(`${BASE}/`);
  const text = await waitText(page, '[role=alert]', /busy/);
  assert.match(text, /Retry in 2 s/);
  await shot(page, 'busy');
  await page.getByRole('button', { name: 'Retry' }).click();
  await waitText(page, '#content', /Live now/);

  // A live stream that cannot connect is reported, not shown as live.
  await page.route((url) => url.pathname.endsWith('/events'), (route) => route.abort('connectionrefused'));
  await page.goto(`${BASE}/sales/${SALE_SOON}`);
  await waitText(page, '#live', /interrupted/);
  await waitText(page, '#stock', /of 100 left/);

  // A shop that cannot be reached at all.
  await page.route((url) => url.pathname === '/api/v1/products', (route) => route.abort('connectionrefused'));
  await page.goto(`${BASE}/`);
  await waitText(page, '[role=alert]', /Could not reach the shop/);
  assert.equal(await page.getByRole('button', { name: 'Retry' }).count(), 1);
});

step('a new shopper registers, and user1 signs out for real', async () => {
  const page = await newPage();
  await page.goto(`${BASE}/register`);
  await page.getByLabel('Username').fill(NEW_USER);
  await page.getByLabel('Email').fill(`${NEW_USER}@example.test`);
  await page.getByLabel('Password').fill('a-long-passphrase');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(`${BASE}/`);
  await waitText(page, '#nav', new RegExp(`${NEW_USER}\\s*Sign out`));

  const token = await user1.evaluate(() => JSON.parse(localStorage.getItem('flashsale.session')).access_token);
  await user1.getByRole('button', { name: 'Sign out' }).click();
  await user1.waitForURL(`${BASE}/`);
  await waitText(user1, '#nav', /Sign in/);
  const me = await fetch(`${BASE}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(me.status, 401, 'the old token is dead after sign out');
  assert.equal((await me.json()).error.code, 'token_revoked');
});

paymentSteps();
await run();
