// The shopper's orders: the list, one order's page (its status, the hold's
// countdown on the shop's clock, Pay, its payments, kept up to date by
// itself), and the hold box the sale page shows after a win.

import { api, timed, shopDate, session, ApiError } from './api.js';
import {
  h, money, when, duration, parseTime, loadInto, signInHref, setTitle, errorBox, describe, orderBadge,
  ORDER_LABEL, ShopClock,
} from './ui.js';

const PAYMENT_LABEL = {
  open: 'Open',
  succeeded: 'Succeeded',
  failed: 'Failed',
  refunding: 'Refund under way',
  refunded: 'Refunded',
};

/** Every product the orders' lines name, read once each, by id. */
async function productsOf(orders) {
  const ids = [...new Set(orders.flatMap((o) => o.lines.map((l) => l.product_id)))];
  const products = await Promise.all(ids.map((pid) => api(`/products/${pid}`, { auth: false })));
  return new Map(products.map((p) => [p.id, p]));
}

/** Where a line's product is bought: its sale for a sale order, else its page. */
function lineHref(order, productId) {
  return order.sale_id ? `/sales/${order.sale_id}` : `/products/${productId}`;
}

/** Samples `clock` once: a sale order by its sale, a catalog order by the `Date` header. */
async function sampleClock(order, clock) {
  if (order.sale_id) {
    const { data, sent, received } = await timed(`/sales/${order.sale_id}/status`);
    clock.sample(data.server_time, sent, received);
  } else {
    clock.sampleDate(await shopDate());
  }
}

/**
 * Opens (or reopens) the order's payment and goes to the provider's page.
 * Resolves only on failure, with the ApiError.
 */
export async function payOrder(orderId) {
  const payment = await api(`/orders/${orderId}/pay`, { method: 'POST', body: {} });
  location.assign(payment.redirect_url);
  // The page is leaving; nothing follows.
  return new Promise(() => {});
}

/** What a refused Pay means, in a sentence. */
function payRefusal(err) {
  switch (err.code) {
    case 'hold_expired': return 'The hold ran out before it was paid, so what it held went back to the stock.';
    case 'order_not_payable': return 'This order cannot be paid any more.';
    default: return null;
  }
}

/**
 * A held order's countdown (to `expires_at`, on `clock`) and its Pay button.
 * Ticks by itself; `onRunOut` is called once when the countdown reaches zero.
 */
export function holdBox(order, clock, { onRunOut = () => {} } = {}) {
  const expiresAt = parseTime(order.expires_at);
  const countdown = h('span', { id: 'hold-countdown', role: 'timer', 'aria-live': 'off', 'aria-atomic': 'true' });
  const note = h('div', { class: 'hold-note', 'aria-live': 'polite' });
  const pay = h('button', { type: 'button', id: 'pay', class: 'buy' }, `Pay ${money(order.total_cents, order.currency || 'EUR')}`);
  const box = h('div', { class: 'hold', 'data-order': order.id },
    h('p', { class: 'countdown' }, h('span', { id: 'hold-countdown-label' }, 'Pay within'), ' ', countdown),
    pay, note);
  let ranOut = false;
  const tick = () => {
    const left = expiresAt - clock.now();
    countdown.textContent = duration(left);
    if (left <= 0 && !ranOut) {
      ranOut = true;
      clearInterval(timer);
      pay.disabled = true;
      note.replaceChildren(h('p', { class: 'alert alert-error', role: 'alert' },
        'The hold ran out: the unit goes back to the stock.'));
      onRunOut();
    }
  };
  const timer = setInterval(() => {
    if (!box.isConnected) clearInterval(timer);
    else tick();
  }, 250);
  pay.addEventListener('click', async () => {
    pay.disabled = true;
    note.replaceChildren(h('p', { class: 'muted', role: 'status' }, 'Opening the payment…'));
    try {
      await payOrder(order.id);
    } catch (err) {
      const refusal = payRefusal(err);
      note.replaceChildren(refusal
        ? h('p', { class: 'alert alert-error', role: 'alert' }, refusal)
        : errorBox(err, () => pay.click()));
      pay.disabled = Boolean(refusal) || ranOut;
    }
  });
  tick();
  return box;
}

export async function ordersPage(content) {
  if (!session()) {
    content.replaceChildren(h('p', {}, h('a', { href: signInHref() }, 'Sign in'), ' to see your orders.'));
    return;
  }
  await loadInto(content, async () => {
    const orders = (await api('/orders?limit=100')).items;
    return { orders, products: await productsOf(orders) };
  }, ({ orders, products }) => {
    if (!orders.length) {
      content.append(h('p', {}, 'No orders yet. ', h('a', { href: '/sales' }, 'See the sales'),
        ' or ', h('a', { href: '/products' }, 'the books'), '.'));
      return;
    }
    content.append(h('div', { class: 'table-wrap' }, h('table', { id: 'orders' },
      h('caption', { class: 'sr-only' }, 'My orders, newest first'),
      h('thead', {}, h('tr', {}, ['Order', 'Books', 'Qty', 'Total', 'Status', 'Placed'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, orders.map((o) => h('tr', { 'data-order': o.id },
        h('td', { class: 'order-number' }, h('a', { href: `/orders/${o.id}` }, o.number)),
        h('td', {}, o.lines.flatMap((l, i) => {
          const p = products.get(l.product_id);
          return [i ? ', ' : null, h('a', { href: lineHref(o, l.product_id) }, p ? p.name : `#${l.product_id}`),
            o.lines.length > 1 ? ` × ${l.quantity}` : null];
        })),
        h('td', {}, o.quantity),
        h('td', { class: 'nowrap' }, money(o.total_cents, o.currency)),
        h('td', {}, orderBadge(o.status)),
        h('td', {}, when(o.created_at))))))));
  });
}

/** An order is settled once nothing about it can change by itself. */
function settled(order, payments) {
  return order.status !== 'pending_payment' && !payments.some((p) => p.status === 'refunding');
}

const EXPLAIN = {
  paid: (o) => `Paid ${when(o.paid_at)}. Thank you!`,
  confirmed: () => 'Confirmed: nothing to pay.',
  payment_failed: () => 'The payment failed, so what it held went back to the stock. You may buy again while stock lasts.',
  expired: () => 'The hold ran out before it was paid, so what it held went back to the stock.',
  cancelled: () => 'The shop cancelled this order; what it held went back to the stock.',
  refunded: () => 'Refunded: the money goes back to the card it was paid with.',
};

export async function orderPage(content) {
  if (!session()) {
    content.replaceChildren(h('p', {}, h('a', { href: signInHref() }, 'Sign in'), ' to see this order.'));
    return;
  }
  const id = Number(location.pathname.split('/')[2]);
  const clock = new ShopClock();
  const read = async () => {
    const [order, payments] = await Promise.all([
      api(`/orders/${id}`), api(`/orders/${id}/payments`).then((l) => l.items),
    ]);
    return { order, payments };
  };
  let first;
  await loadInto(content, async () => {
    const now = await read();
    const [products] = await Promise.all([
      productsOf([now.order]),
      // The hold's countdown runs on the shop's clock.
      sampleClock(now.order, clock),
    ]);
    return { ...now, products };
  }, (data) => {
    first = data;
  });
  if (!first) return;
  const { products } = first;
  const sold = first.order;
  setTitle(`Order ${sold.number}`);
  // Two more samples sharpen the clock estimate.
  (async () => {
    for (let i = 0; i < 2; i += 1) {
      try {
        await sampleClock(sold, clock);
      } catch { /* the first sample stands */ }
    }
  })();
  const lines = h('div', { class: 'table-wrap' }, h('table', { id: 'order-lines' },
    h('caption', { class: 'sr-only' }, 'The books of this order'),
    h('thead', {}, h('tr', {}, ['Book', 'Price', 'Qty', 'Total'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, sold.lines.map((l) => {
      const p = products.get(l.product_id);
      return h('tr', { 'data-product': l.product_id },
        h('td', {}, h('a', { href: lineHref(sold, l.product_id) }, p ? p.name : `#${l.product_id}`)),
        h('td', { class: 'num nowrap' }, money(l.unit_price_cents, sold.currency)),
        h('td', { class: 'num' }, l.quantity),
        h('td', { class: 'num nowrap' }, money(l.total_cents, sold.currency)));
    }))));

  // Announced when it changes (paid, failed, expired).
  const status = h('p', { class: 'row', 'aria-live': 'polite' });
  const explain = h('p', { id: 'order-explain' });
  const hold = h('div', { id: 'order-hold' });
  const paymentsBox = h('section', { 'aria-labelledby': 'h-payments' });
  const note = h('p', { id: 'order-live', class: 'muted small', 'aria-live': 'polite' });
  const problem = h('div');
  content.replaceChildren(h('div', { class: 'sale' },
    h('section', { class: 'sale-info' }, status, explain,
      lines,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Copies'), h('dd', {}, sold.quantity),
        h('dt', {}, 'Total'), h('dd', { id: 'order-total' }, money(sold.total_cents, sold.currency)),
        h('dt', {}, 'Currency'), h('dd', { id: 'order-currency' }, sold.currency),
        h('dt', {}, 'Placed'), h('dd', {}, when(sold.created_at)))),
    h('section', { class: 'sale-box', 'aria-label': 'Payment' }, hold, paymentsBox, problem, note)));

  let holdShown = null;
  function render({ order, payments }) {
    const badge = orderBadge(order.status);
    badge.id = 'order-status';
    status.replaceChildren(badge);
    const text = order.status === 'pending_payment'
      ? 'Held for you: pay before the countdown ends, or what it holds goes back to the stock.'
      : (EXPLAIN[order.status] || (() => ORDER_LABEL[order.status] || order.status))(order);
    if (explain.textContent !== text) explain.textContent = text;
    // The hold box keeps its own countdown: draw it again only when it changes.
    const key = `${order.status} ${order.expires_at}`;
    if (holdShown !== key) {
      holdShown = key;
      if (order.status === 'pending_payment' && order.expires_at) {
        hold.replaceChildren(holdBox(order, clock));
      } else if (order.status === 'payment_failed' || order.status === 'expired') {
        hold.replaceChildren(h('p', {}, order.sale_id
          ? h('a', { href: `/sales/${order.sale_id}` }, 'Back to the sale')
          : h('a', { href: '/products' }, 'Back to the books')));
      } else {
        hold.replaceChildren();
      }
    }
    paymentsBox.replaceChildren(h('h2', { id: 'h-payments' }, 'Payments'), payments.length
      ? h('div', { class: 'table-wrap' }, h('table', { id: 'payments' },
        h('caption', { class: 'sr-only' }, 'Payments of this order, newest first'),
        h('thead', {}, h('tr', {}, ['Started', 'Amount', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, payments.map((p) => h('tr', { 'data-payment': p.id },
          h('td', {}, when(p.created_at)),
          h('td', { class: 'nowrap' }, money(p.amount_cents, p.currency)),
          h('td', {}, PAYMENT_LABEL[p.status] || p.status,
            p.status === 'open' && order.status === 'pending_payment'
              ? [' · ', h('a', { href: p.redirect_url }, 'Continue paying')] : null))))))
      : h('p', { class: 'muted' }, 'No payment yet.'));
  }

  // Polled every second until settled: the provider's word reaches the shop
  // by webhook a moment after the shopper pays, and holds run out.
  let timer = null;
  async function poll() {
    try {
      const now = await read();
      problem.replaceChildren();
      render(now);
      if (settled(now.order, now.payments)) {
        note.textContent = 'This order is settled.';
        return;
      }
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, 'network', String(err));
      if (['forbidden', 'not_found', 'unauthorized', 'token_revoked'].includes(e.code)) {
        problem.replaceChildren(errorBox(e));
        return;
      }
      problem.replaceChildren(h('p', { class: 'alert alert-error', role: 'alert' },
        `${describe(e)} Trying again every second.`));
    }
    note.textContent = 'Updates by itself every second.';
    timer = setTimeout(poll, 1000);
  }
  render(first);
  if (settled(first.order, first.payments)) note.textContent = 'This order is settled.';
  else {
    note.textContent = 'Updates by itself every second.';
    timer = setTimeout(poll, 1000);
  }
  window.addEventListener('pagehide', () => clearTimeout(timer));
}
