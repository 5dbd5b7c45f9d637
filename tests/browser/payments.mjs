// The paying steps of the browser suite: a win on a hold sale, the test
// processor's page (4242 pays, 0002 is declined), the order page following
// the order by itself (paid, payment failed, expired, cancelled, refunded),
// the unit going back to another shopper's open sale page, and the admin's
// cancel and refund from a sale's live view.

import assert from 'node:assert/strict';
import { env, BASE, result, newPage, shot, waitText, signIn, step } from './lib.mjs';

const ADMIN = env('ADMIN');
// Each sale holds a win for HOLD_SECS, except SALE_SHORT, which holds it for
// SHORT_HOLD_SECS.
const PAYER = env('PAYER');
const DECLINER = env('DECLINER');
const WATCHER = env('WATCHER');
const EXPIRER = env('EXPIRER');
const CANCELEE = env('CANCELEE');
const SALE_PAY = env('SALE_PAY');
const SALE_DECLINE = env('SALE_DECLINE');
const SALE_SHORT = env('SALE_SHORT');
const HOLD_SECS = Number(env('HOLD_SECS'));
const SHORT_HOLD_SECS = Number(env('SHORT_HOLD_SECS'));

/** Buys on the open sale page; returns the held order `{id, number}`. */
async function winHold(page) {
  await page.locator('#buy').click();
  await waitText(page, '#result', /Won!/);
  const number = (await page.locator('#result .order-number').textContent()).trim();
  const id = Number(await page.locator('#hold .hold').getAttribute('data-order'));
  assert.ok(id > 0, 'the hold box names its order');
  return { id, number };
}

/** Clicks Pay on a hold and lands on the test processor's page. */
async function toPaymentPage(page) {
  await page.locator('#pay').click();
  await page.waitForURL(/\/pay\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  await waitText(page, '.test-banner', /Simulated test processor/);
}

async function enterCard(page, number) {
  await page.locator('#card-number').fill(number);
  await page.locator('#pay-card').click();
}

/** Registers the paying steps, to run after the shop's. */
export function paymentSteps() {
  let payer;
  step('a winner sees the hold\'s countdown, pays with 4242 on the test processor and sees paid', async () => {
    payer = await newPage();
    // A browser clock ten minutes slow: the hold's countdown must not trust it.
    await payer.context().addInitScript(() => {
      const realNow = Date.now.bind(Date);
      Date.now = () => realNow() - 600_000;
    });
    await signIn(payer, PAYER, `/sales/${SALE_PAY}`);
    const order = await winHold(payer);
    result.paid_order = order.number;
    const left = await waitText(payer, '#hold-countdown', /^\d\d:\d\d$/);
    const [mm, ss] = left.split(':').map(Number);
    // The page knows the shop's clock to within a request's round trip, and
    // shows whole seconds rounded up: one second over the hold is that error.
    assert.ok(mm * 60 + ss <= HOLD_SECS + 1 && mm * 60 + ss >= HOLD_SECS - 60,
      `the hold's countdown ${left} runs on the shop's clock from ${HOLD_SECS} s`);
    await shot(payer, 'sale-hold');
    // Coming back to the sale page later shows the unpaid hold again.
    await payer.reload();
    await waitText(payer, '#result .order-number', new RegExp(`^${order.number}$`));
    await waitText(payer, '#hold-countdown', /^\d\d:\d\d$/);

    await toPaymentPage(payer);
    await waitText(payer, '#charge-amount', /24[.,]90/);
    await waitText(payer, '#charge-currency', /^EUR$/);
    await waitText(payer, '#charge-order', new RegExp(`#${order.id}$`));
    await waitText(payer, '#test-cards', /4242 4242 4242 4242.*4000 0000 0000 0002/s);
    await shot(payer, 'pay-page');
    await enterCard(payer, '4242 4242 4242 4242');
    await waitText(payer, '#pay-result', /Payment accepted/);
    await payer.locator('#back-to-shop').click();
    await payer.waitForURL(`${BASE}/orders/${order.id}`);
    // The shop hears of it by webhook; the page follows until it is settled.
    await waitText(payer, '#order-status', /^Paid$/);
    await waitText(payer, '#payments', /Succeeded/);
    await waitText(payer, '#order-live', /settled/);
    assert.equal(await payer.locator('#pay').count(), 0, 'nothing left to pay');
    await shot(payer, 'order-paid');

    // My orders links to the order's page.
    await payer.goto(`${BASE}/orders`);
    await payer.locator('#orders').getByRole('link', { name: order.number }).click();
    await payer.waitForURL(`${BASE}/orders/${order.id}`);
    await waitText(payer, '#order-status', /^Paid$/);
  });

  step('a declined card gives the unit back, to another shopper\'s open sale page', async () => {
    const watcher = await newPage();
    await signIn(watcher, WATCHER, `/sales/${SALE_DECLINE}`);
    await waitText(watcher, '#stock', /^1 of 1 left$/);
    await waitText(watcher, '#live', /Live updates on/);
    await watcher.evaluate(() => { window.notReloaded = true; });

    const decliner = await newPage();
    await signIn(decliner, DECLINER, `/sales/${SALE_DECLINE}`);
    const order = await winHold(decliner);
    result.declined_order = order.number;
    await waitText(watcher, '#stock', /^Sold out$/);

    await toPaymentPage(decliner);
    // Not a test card: refused, and the payment stays open.
    await enterCard(decliner, '1234 5678 9012 3456');
    await waitText(decliner, '#pay-result', /not a test card/);
    await enterCard(decliner, '4000 0000 0000 0002');
    await waitText(decliner, '#pay-result', /Payment declined: the card was declined/);
    await shot(decliner, 'pay-declined');
    await decliner.locator('#back-to-shop').click();
    await decliner.waitForURL(`${BASE}/orders/${order.id}`);
    await waitText(decliner, '#order-status', /^Payment failed$/);
    await waitText(decliner, '#payments', /Failed/);

    // The unit is back on the other shopper's page, pushed over SSE, and it
    // can be won again.
    await waitText(watcher, '#stock', /^1 of 1 left$/);
    await watcher.waitForFunction(() => !document.querySelector('#buy').disabled);
    assert.equal(await watcher.evaluate(() => window.notReloaded), true, 'no reload');
    result.watcher_order = (await winHold(watcher)).number;
  });

  step('a hold that runs out unpaid gives its unit back and shows expired', async () => {
    const page = await newPage();
    await signIn(page, EXPIRER, `/sales/${SALE_SHORT}`);
    await waitText(page, '#stock', /^2 of 2 left$/);
    await waitText(page, '#live', /Live updates on/);
    const order = await winHold(page);
    result.expired_order = order.number;
    // The wait is real: the hold lasts SHORT_HOLD_SECS.
    const left = await waitText(page, '#hold-countdown', /^00:\d\d$/);
    assert.ok(Number(left.slice(3)) <= SHORT_HOLD_SECS, `countdown ${left}`);
    const timeout = (SHORT_HOLD_SECS + 20) * 1000;
    await waitText(page, '#hold', /hold ran out/, timeout);
    assert.equal(await page.locator('#pay').isDisabled(), true, 'no paying a run-out hold');
    // The sweeper releases it; the stock shown follows without a reload.
    await waitText(page, '#stock', /^2 of 2 left$/);
    await page.locator('#result').getByRole('link', { name: 'See the order' }).click();
    await page.waitForURL(`${BASE}/orders/${order.id}`);
    await waitText(page, '#order-status', /^Expired$/);
    await waitText(page, '#order-explain', /hold ran out/);
    assert.equal(await page.locator('#pay').count(), 0, 'no Pay on an expired order');
    await shot(page, 'order-expired');
  });

  step('the admin cancels a waiting order and refunds a paid one from the live view', async () => {
    // A shopper holds a unit and watches the order's page.
    const shopper = await newPage();
    await signIn(shopper, CANCELEE, `/sales/${SALE_PAY}`);
    const order = await winHold(shopper);
    result.cancelled_order = order.number;
    await shopper.locator('#result').getByRole('link', { name: 'See the order' }).click();
    await shopper.waitForURL(`${BASE}/orders/${order.id}`);
    await waitText(shopper, '#order-status', /^Waiting for payment$/);
    await waitText(shopper, '#hold-countdown', /^\d\d:\d\d$/);
    await shopper.evaluate(() => { window.notReloaded = true; });

    const admin = await newPage();
    await signIn(admin, ADMIN, `/admin/sales/${SALE_PAY}`);
    const row = (n) => admin.locator(`#sale-orders tr[data-order="${n}"]`);
    await waitText(admin, `#sale-orders tr[data-order="${order.number}"]`, /Waiting for payment/);
    await waitText(admin, `#sale-orders tr[data-order="${result.paid_order}"]`, new RegExp(`${PAYER}.*Paid`));
    await row(order.number).getByRole('button', { name: 'Cancel' }).click();
    await admin.getByRole('button', { name: `Yes, cancel ${order.number}` }).click();
    await waitText(admin, '#orders-msg', new RegExp(`Order ${order.number} is now cancelled`));
    await waitText(admin, `#sale-orders tr[data-order="${order.number}"]`, /Cancelled/);
    assert.equal(await row(order.number).getByRole('button').count(), 0, 'a cancelled order has no action');
    // The shopper's page follows by itself.
    await waitText(shopper, '#order-status', /^Cancelled$/);
    assert.equal(await shopper.locator('#pay').count(), 0);
    assert.equal(await shopper.evaluate(() => window.notReloaded), true, 'no reload');

    await row(result.paid_order).getByRole('button', { name: 'Refund' }).click();
    await admin.getByRole('button', { name: `Yes, refund ${result.paid_order}` }).click();
    await waitText(admin, '#orders-msg', new RegExp(`Order ${result.paid_order} is now refunded`));
    await admin.locator('#orders-status').selectOption('cancelled');
    await admin.waitForFunction((n) => {
      const rows = [...document.querySelectorAll('#sale-orders tbody tr')].map((r) => r.dataset.order);
      return rows.length === 1 && rows[0] === n;
    }, order.number);
    await shot(admin, 'admin-orders');

    // The payer's order page shows the refund, and follows it to its end.
    await payer.reload();
    await waitText(payer, '#order-status', /^Refunded$/);
    await waitText(payer, '#payments', /Refunded/);
    await waitText(payer, '#order-live', /settled/);
  });

  step('a payment page whose id is not a payment id is a 404 page', async () => {
    const page = await newPage();
    for (const bad of ['not-a-uuid', '123']) {
      const resp = await page.goto(`${BASE}/pay/${bad}`);
      assert.equal(resp.status(), 404, bad);
      await waitText(page, '#content', /no such page/i);
    }
    const resp = await page.goto(`${BASE}/orders/abc`);
    assert.equal(resp.status(), 404);
  });
}
