// The shopper's cart: each line at today's price with its availability,
// quantity changes and removal, the total, and checkout into one order whose
// payment page opens next.

import { api, session, idempotencyKey } from './api.js';
import { h, money, loadInto, signInHref, errorBox, showCartCount } from './ui.js';
import { quantityOf, quantityInput } from './products.js';
import { payOrder } from './orders.js';

/** Why a line cannot be had in its quantity now, or null. */
function shortage(item) {
  if (item.available) return null;
  const { stock } = item.product;
  return stock <= 0 ? 'Out of stock' : `Only ${stock} left`;
}

/** The refusal of a checkout whose lines ran short, naming each one. */
function outOfStock(err, cart) {
  const names = new Map(cart.items.map((i) => [i.product.id, i.product.name]));
  const lines = (err.details && err.details.lines) || [];
  return h('div', { class: 'alert alert-error', role: 'alert', id: 'checkout-refused' },
    h('p', {}, h('strong', {}, 'Not checked out: '),
      lines.length === 1 ? 'a book ran short meanwhile.' : 'some books ran short meanwhile.'),
    h('ul', { id: 'short-lines' }, lines.map((l) => h('li', { 'data-product': l.product_id },
      h('strong', {}, names.get(l.product_id) || `Book #${l.product_id}`), ': you asked for ',
      `${l.requested}, `, l.available ? `only ${l.available} ${l.available === 1 ? 'is' : 'are'} left.` : 'none is left.'))),
    h('p', {}, 'Nothing was ordered and your cart is as it was. Lower the quantity or remove these books, then check out again.'));
}

export async function cartPage(content) {
  if (!session()) {
    content.replaceChildren(h('p', {}, h('a', { href: signInHref() }, 'Sign in'), ' to see your cart.'));
    return;
  }
  const message = h('div', { id: 'cart-message', 'aria-live': 'polite' });
  const box = h('div', { id: 'cart' });
  content.replaceChildren(message, box);
  let cart = null;
  // Kept while a checkout's answer is unknown (no answer, busy), so that its
  // retry is the same request and never makes a second order.
  let pendingKey = null;

  const say = (...parts) => message.replaceChildren(...parts);
  const note = (kind, text) => h('p', { class: kind === 'ok' ? 'alert alert-ok' : 'alert alert-error', role: kind === 'ok' ? 'status' : 'alert' }, text);

  function render(next) {
    cart = next;
    showCartCount(cart);
    if (!cart.items.length) {
      box.replaceChildren(h('p', { id: 'cart-empty' }, 'Your cart is empty. ',
        h('a', { href: '/products' }, 'Browse the books')));
      return;
    }
    const rows = cart.items.map((item) => {
      const p = item.product;
      const qty = quantityInput(`qty-${p.id}`, item.quantity, `Quantity of ${p.name}`);
      const form = h('form', { class: 'line-form', novalidate: true },
        qty, h('button', { type: 'submit', class: 'secondary small', 'aria-label': `Update the quantity of ${p.name}` }, 'Update'));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        change(p, qty);
      });
      const short = shortage(item);
      return h('tr', { 'data-product': p.id },
        h('td', {}, h('a', { href: `/products/${p.id}` }, p.name),
          short ? h('div', { class: 'short small availability' }, short) : null),
        h('td', { class: 'num nowrap' }, money(item.unit_price_cents, p.currency)),
        h('td', {}, form),
        h('td', { class: 'num nowrap line-total' }, money(item.total_cents, p.currency)),
        h('td', {}, h('button', {
          type: 'button', class: 'link remove', 'aria-label': `Remove ${p.name}`, onclick: () => remove(p),
        }, 'Remove')));
    });
    const total = cart.total_cents === null
      ? h('p', { id: 'cart-total', class: 'alert alert-error' },
        'This cart holds books priced in different currencies: an order is in one currency, so remove the books of one of them to check out.')
      : h('p', { class: 'cart-total' }, 'Total ', h('span', { id: 'cart-total' }, money(cart.total_cents, cart.currency)),
        h('span', { class: 'muted small', id: 'cart-currency' }, ` (${cart.currency})`));
    const checkout = h('button', { type: 'button', id: 'checkout', class: 'buy', disabled: !cart.ready }, 'Check out');
    checkout.addEventListener('click', () => checkoutNow(checkout));
    box.replaceChildren(
      h('div', { class: 'table-wrap' }, h('table', { id: 'cart-lines' },
        h('caption', { class: 'sr-only' }, 'Books in your cart, at today’s prices'),
        h('thead', {}, h('tr', {}, ['Book', 'Price', 'Quantity', 'Total', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))),
      h('section', { class: 'sale-box', 'aria-label': 'Check out' }, total,
        cart.ready || cart.total_cents === null ? null
          : h('p', { class: 'short', id: 'not-ready' }, 'Some books are short: lower their quantity or remove them to check out.'),
        checkout,
        h('p', { class: 'muted small' }, 'Checking out holds every book for you until you pay; prices are today’s.')));
  }

  async function change(p, input) {
    const n = quantityOf(input);
    if (n === null) {
      say(note('bad', `Quantity of ${p.name}: enter a whole number from 1 to 100.`));
      input.focus();
      return;
    }
    say(h('p', { class: 'muted', role: 'status' }, 'Updating…'));
    try {
      render(await api(`/cart/items/${p.id}`, { method: 'PUT', body: { quantity: n } }));
      pendingKey = null;
      say(note('ok', `${p.name}: ${n} ${n === 1 ? 'copy' : 'copies'}.`));
    } catch (err) {
      say(errorBox(err, () => change(p, input)));
    }
  }

  async function remove(p) {
    say(h('p', { class: 'muted', role: 'status' }, 'Removing…'));
    try {
      render(await api(`/cart/items/${p.id}`, { method: 'DELETE' }));
      pendingKey = null;
      say(note('ok', `${p.name} was removed from your cart.`));
    } catch (err) {
      say(errorBox(err, () => remove(p)));
    }
  }

  async function reload() {
    try {
      render(await api('/cart'));
    } catch { /* the lines shown stay; the message above says what happened */ }
  }

  async function checkoutNow(button) {
    // Disabled at once: a double click sends one request.
    button.disabled = true;
    pendingKey ??= idempotencyKey();
    say(h('p', { class: 'muted', role: 'status' }, 'Checking out…'));
    let order;
    try {
      order = await api('/cart/checkout', { method: 'POST', headers: { 'idempotency-key': pendingKey } });
    } catch (err) {
      const unknown = ['network', 'busy', 'rate_limited', 'request_in_progress'].includes(err.code);
      if (!unknown) pendingKey = null;
      switch (err.code) {
        case 'out_of_stock':
          say(outOfStock(err, cart));
          await reload();
          break;
        case 'cart_empty':
          say(note('bad', 'Your cart is empty: there is nothing to check out.'));
          await reload();
          break;
        case 'validation_failed':
          say(note('bad', 'An order is in one currency: remove the books of the other currency to check out.'));
          await reload();
          break;
        default:
          say(errorBox(err, () => checkoutNow(button)));
          button.disabled = false;
      }
      return;
    }
    pendingKey = null;
    showCartCount({ items: [] });
    box.replaceChildren();
    say(h('p', { class: 'alert alert-ok', role: 'status' }, h('strong', {}, 'Order '),
      h('strong', { class: 'order-number' }, order.number), ' is held for you. Opening the payment…'));
    try {
      await payOrder(order.id);
    } catch {
      // The order page has its own Pay button and says why paying failed.
      location.assign(`/orders/${order.id}`);
    }
  }

  await loadInto(box, () => api('/cart'), render);
}
