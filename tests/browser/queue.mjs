// A waiting-room sale in headless Chromium: two shoppers in one browser (two
// contexts) join the pre-queue, the sale starts, each page shows its own
// place and the wait (moved by the live stream), then the turn with the time
// left, and each buys on its turn.
// Run by tests/api/browser_queue.rs, which makes the sale, the shoppers and
// four more who joined through the API, and checks the database against the
// RESULT line printed here. Every wait is on page state, never on time.

import assert from 'node:assert/strict';
import {
  env, BASE, result, newPage, shot, waitText, signIn, apiLogin, step, run,
} from './lib.mjs';

const SALE = env('SALE');
const SHOPPERS = [env('SHOPPER_A'), env('SHOPPER_B')];
const ADMIN = env('ADMIN');

async function ticketOf(username) {
  const token = await apiLogin(username);
  const r = await fetch(`${BASE}/api/v1/sales/${SALE}/queue`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `${username}'s ticket`);
  return r.json();
}

const pages = [];
step('two shoppers open the sale page before the start and join the queue', async () => {
  for (const name of SHOPPERS) {
    const page = await newPage();
    await signIn(page, name, `/sales/${SALE}`);
    await waitText(page, '#queue-text', /This sale has a waiting room\./);
    await waitText(page, '#queue-detail', /random place when it opens: there is no need to rush/);
    assert.equal(await page.locator('#buy').isDisabled(), true, 'no buying before the start');
    await page.locator('#queue-join').click();
    await waitText(page, '#queue-text', /^You are in the queue\.$/);
    await waitText(page, '#queue-detail', /drawn at random when the sale starts/);
    assert.equal(await page.locator('#queue-join').isHidden(), true, 'joined once: no second button');
    pages.push(page);
  }
  await shot(pages[0], 'queue-pre-queue');
});

step('the sale starts and each page shows its own place and wait', async () => {
  const token = await apiLogin(ADMIN);
  const sale = await (await fetch(`${BASE}/api/v1/sales/${SALE}`)).json();
  const starts = new Date(Date.parse(sale.server_time) + 4000).toISOString();
  const r = await fetch(`${BASE}/api/v1/sales/${SALE}`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ starts_at: starts }),
  });
  assert.equal(r.status, 200, 'the admin moves the start');
  const places = [];
  for (const [i, page] of pages.entries()) {
    // The page learns its place from the draw; it shows it until its turn.
    const text = await waitText(page, '#queue-text', /Your place: #\d+|It is your turn/, 30_000);
    const mine = (await ticketOf(SHOPPERS[i])).position;
    assert.ok(Number.isInteger(mine), `${SHOPPERS[i]} has a place`);
    places.push(mine);
    if (mine > 1) {
      // Admitted one a second: place 2 and behind are still waiting here.
      assert.match(text, new RegExp(`^Your place: #${mine} · \\d+ ahead of you$`), `${SHOPPERS[i]} sees its own place`);
      await waitText(page, '#queue-detail', /^About .+ to wait\./);
    }
  }
  assert.notEqual(places[0], places[1], 'two places');
  result.places = places;
  await shot(pages[places[0] > places[1] ? 0 : 1], 'queue-waiting');
});

step('at its turn each page offers the buy button with the time left, and buys', async () => {
  for (const page of pages) {
    await waitText(page, '#queue-text', /^It is your turn: buy now\.$/, 30_000);
    await waitText(page, '#queue-detail', /left to buy\.$/);
    await page.locator('#buy').click();
    await waitText(page, '#result', /Bought!/);
    await waitText(page, '#queue-text', /^You bought with your turn\.$/);
  }
  await shot(pages[0], 'queue-bought');
  result.orders = await Promise.all(pages.map((p) => p.locator('#result .order-number').textContent()));
});

await run();
