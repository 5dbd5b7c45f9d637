// The catalog and the cart in headless Chromium: search, product pages,
// the cart page, checkout, the test processor's page and the order with its
// lines; then a checkout refused because another shopper took the last copy;
// and the seller setting a book's stock.
// Run by tests/api/browser_cart.rs, which makes the users and books named in
// the environment and checks the database against the RESULT line printed
// here. Every wait is on page state, never on time.

import assert from 'node:assert/strict';
import {
  env, BASE, result, newPage, shot, waitText, signIn, apiLogin, step, run,
} from './lib.mjs';

const SHOPPER = env('SHOPPER');
const LATE = env('LATE');
const RIVAL = env('RIVAL');
const SELLER = env('SELLER');
const BOOK_A = env('BOOK_A');
const BOOK_A_NAME = env('BOOK_A_NAME');
const BOOK_B = env('BOOK_B');
const BOOK_B_NAME = env('BOOK_B_NAME');
const BOOK_LAST = env('BOOK_LAST');
const BOOK_LAST_NAME = env('BOOK_LAST_NAME');

// Amounts as any locale writes them: "34.90", "34,90".
const amount = (cents) => new RegExp(`${Math.floor(cents / 100)}[.,]${String(cents % 100).padStart(2, '0')}`);

/** Searches with the header's box and opens the one book found. */
async function findAndOpen(page, words, name, id) {
  await page.locator('#site-search').fill(words);
  await page.locator('#site-search').press('Enter');
  await page.waitForURL(`${BASE}/products?q=${encodeURIComponent(words)}`);
  await waitText(page, '#result-count', new RegExp(`Books matching “${words}”`));
  // The query stays in the box.
  assert.equal(await page.locator('#catalog-search').inputValue(), words);
  const found = await page.locator('#products li h3').allTextContents();
  assert.deepEqual(found, [name], `the search for ${words} finds only ${name}`);
  await page.getByRole('link', { name }).click();
  await page.waitForURL(`${BASE}/products/${id}`);
  await waitText(page, '#title', new RegExp(`^${name}$`));
}

async function addToCart(page, quantity, count) {
  await page.getByLabel('Quantity').fill(String(quantity));
  await page.locator('#add-to-cart').click();
  await waitText(page, '#result', /Added\./);
  await waitText(page, '#cart-count', new RegExp(`\\(${count}\\)`));
}

let shopper;
step('a shopper searches, adds two books to the cart and changes a quantity', async () => {
  shopper = await newPage();
  await signIn(shopper, SHOPPER, '/');
  await findAndOpen(shopper, 'lighthouse', BOOK_A_NAME, BOOK_A);
  await waitText(shopper, '#stock', /^5 in stock$/);
  // A quantity that is not one is refused on the page, with a reason.
  await shopper.getByLabel('Quantity').fill('0');
  await shopper.locator('#add-to-cart').click();
  await waitText(shopper, '#result', /whole number of copies from 1 to 100/);
  await addToCart(shopper, 1, 1);
  await shot(shopper, 'product-page');

  await findAndOpen(shopper, 'ferns', BOOK_B_NAME, BOOK_B);
  await waitText(shopper, '#stock', /^3 in stock$/);
  await addToCart(shopper, 1, 2);

  await shopper.locator('#cart-link').click();
  await shopper.waitForURL(`${BASE}/cart`);
  await waitText(shopper, '#cart-total', amount(1250 + 990));
  const lineA = shopper.locator(`#cart-lines tr[data-product="${BOOK_A}"]`);
  await lineA.getByLabel(`Quantity of ${BOOK_A_NAME}`, { exact: true }).fill('2');
  await lineA.getByRole('button', { name: `Update the quantity of ${BOOK_A_NAME}` }).click();
  await waitText(shopper, `#cart-lines tr[data-product="${BOOK_A}"] .line-total`, amount(2 * 1250));
  await waitText(shopper, '#cart-total', amount(2 * 1250 + 990));
  await waitText(shopper, '#cart-count', /\(3\)/);
  // A bad quantity leaves the line as it was and says why.
  await lineA.getByLabel(`Quantity of ${BOOK_A_NAME}`, { exact: true }).fill('101');
  await lineA.getByRole('button', { name: `Update the quantity of ${BOOK_A_NAME}` }).click();
  await waitText(shopper, '#cart-message', /whole number from 1 to 100/);
  await waitText(shopper, '#cart-total', amount(2 * 1250 + 990));
  assert.equal(await shopper.locator('#cart-lines .availability').count(), 0, 'every line is in stock');
  await shot(shopper, 'cart');
});

step('the shopper checks out (a double click makes one order), pays and sees both lines paid', async () => {
  // The second click meets a disabled button: one request, one order.
  await shopper.locator('#checkout').dblclick();
  await shopper.waitForURL(/\/pay\/[0-9a-f-]{36}$/);
  await waitText(shopper, '#charge-amount', amount(2 * 1250 + 990));
  await shopper.locator('#card-number').fill('4242 4242 4242 4242');
  await shopper.locator('#pay-card').click();
  await waitText(shopper, '#pay-result', /Payment accepted/);
  await shopper.locator('#back-to-shop').click();
  await shopper.waitForURL(/\/orders\/\d+$/);
  // The webhook reaches the shop a moment after the card: the page follows.
  await waitText(shopper, '#order-status', /^Paid$/);
  const rows = await shopper.locator('#order-lines tbody tr').evaluateAll((trs) => trs.map(
    (tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()),
  ));
  assert.equal(rows.length, 2, 'the order has both lines');
  assert.deepEqual(rows.map((r) => [r[0], r[2]]), [[BOOK_A_NAME, '2'], [BOOK_B_NAME, '1']]);
  await waitText(shopper, '#order-total', amount(2 * 1250 + 990));
  await waitText(shopper, '#order-currency', /^EUR$/);
  const title = await waitText(shopper, '#title', /^Order \d{4}-\d{2}-\d{6}$/);
  result.paid_order = title.replace('Order ', '');
  await shot(shopper, 'order-lines');
  // The cart is empty after checkout, and the list of orders names both books.
  await waitText(shopper, '#nav', /Cart\s*My orders/);
  await shopper.goto(`${BASE}/orders`);
  await waitText(shopper, "#orders tbody tr", new RegExp(`${BOOK_A_NAME} × 2, ${BOOK_B_NAME} × 1`));
});

let late;
step('a checkout fails when another shopper took the last copy meanwhile, and the cart stays', async () => {
  late = await newPage();
  await signIn(late, LATE, `/products/${BOOK_LAST}`);
  await waitText(late, '#stock', /^1 in stock$/);
  await addToCart(late, 1, 1);
  await late.locator('#go-to-cart').click();
  await late.waitForURL(`${BASE}/cart`);
  await waitText(late, `#cart-lines tr[data-product="${BOOK_LAST}"]`, new RegExp(BOOK_LAST_NAME));
  assert.equal(await late.locator('#checkout').isDisabled(), false, 'the cart looks ready');

  // With the page open, another shopper buys the last copy.
  const token = await apiLogin(RIVAL);
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const put = await fetch(`${BASE}/api/v1/cart/items/${BOOK_LAST}`, {
    method: 'PUT', headers: auth, body: JSON.stringify({ quantity: 1 }),
  });
  assert.equal(put.status, 200, `the rival's cart: ${await put.text()}`);
  const bought = await fetch(`${BASE}/api/v1/cart/checkout`, { method: 'POST', headers: auth });
  const order = await bought.json();
  assert.equal(bought.status, 201, `the rival's checkout: ${JSON.stringify(order)}`);
  result.rival_order = order.number;

  await late.locator('#checkout').click();
  const said = await waitText(late, '#checkout-refused', /Not checked out/);
  assert.match(said, new RegExp(`${BOOK_LAST_NAME}: you asked for 1, none is left\\.`));
  assert.match(said, /Nothing was ordered and your cart is as it was/);
  // The cart is as it was, now showing the line as short; no payment opened.
  await waitText(late, `#cart-lines tr[data-product="${BOOK_LAST}"] .availability`, /^Out of stock$/);
  assert.equal(await late.getByLabel(`Quantity of ${BOOK_LAST_NAME}`, { exact: true }).inputValue(), '1');
  assert.equal(await late.locator('#checkout').isDisabled(), true, 'a short cart cannot be checked out');
  assert.equal(late.url(), `${BASE}/cart`);
  await shot(late, 'cart-out-of-stock');
});

step('the seller sets a book\'s catalog stock on the seller page', async () => {
  const seller = await newPage();
  await signIn(seller, SELLER, '/seller');
  const stock = seller.getByLabel(`Catalog stock of ${BOOK_B_NAME}`, { exact: true });
  // What is left after the paid order.
  assert.equal(await stock.inputValue(), '2');
  await stock.fill('-1');
  await seller.getByRole('button', { name: `Save the stock of ${BOOK_B_NAME}` }).click();
  await waitText(seller, `#my-products tr[data-product="${BOOK_B}"]`, /A whole number from 0/);
  await stock.fill('7');
  await seller.getByRole('button', { name: `Save the stock of ${BOOK_B_NAME}` }).click();
  await waitText(seller, `#my-products tr[data-product="${BOOK_B}"]`, /Saved: 7 in stock\./);
});

await run();
