// The shopper's pages: front page, sales list, and the sale page (countdown
// on the shop's clock, live stock over SSE, the buy button).

import { api, timed, session, ApiError } from './api.js';
import {
  h, money, when, duration, parseTime, stateBadge, STATE_LABEL, loadInto, setTitle, signInHref,
  ShopClock,
} from './ui.js';
import { holdBox } from './orders.js';
import { queueBox } from './queue.js';

function saleCard(sale) {
  const p = sale.product;
  return h('li', { class: 'card' },
    h('h3', {}, h('a', { href: `/sales/${sale.id}` }, p.name)),
    h('p', { class: 'row' }, stateBadge(sale.state),
      h('span', { class: 'price' }, money(sale.price_cents, p.currency))),
    h('p', { class: 'muted' }, sale.state === 'upcoming'
      ? `Starts ${when(sale.starts_at)}`
      : `${sale.remaining} of ${sale.stock} left · ends ${when(sale.ends_at)}`));
}

function saleSection(title, sales, empty) {
  const id = `h-${title.toLowerCase().replace(/\W+/g, '-')}`;
  return h('section', { 'aria-labelledby': id },
    h('h2', { id }, title),
    sales.length ? h('ul', { class: 'cards' }, sales.map(saleCard)) : h('p', { class: 'muted' }, empty));
}

export async function home(content) {
  const best = h('div');
  const sales = h('div');
  content.replaceChildren(sales, best);
  await Promise.all([
    loadInto(sales, () => Promise.all([
      api('/sales?state=active&limit=20', { auth: false }),
      api('/sales?state=upcoming&limit=20', { auth: false }),
    ]), ([live, soon]) => {
      sales.append(saleSection('Live now', live.items, 'No sale is running right now.'),
        saleSection('Coming up', soon.items, 'No sale is scheduled yet.'));
    }),
    loadInto(best, () => api('/products?sort=best_selling&limit=5', { auth: false }), (list) => {
      best.append(h('section', { 'aria-labelledby': 'h-best' },
        h('h2', { id: 'h-best' }, 'Best sellers'),
        list.items.length
          ? h('ol', { class: 'best' }, list.items.map((p) => h('li', {},
            h('a', { class: 'name', href: `/products/${p.id}` }, p.name),
            h('span', { class: 'muted' }, ` · ${p.sell_count} sold · ${money(p.price_cents, p.currency)}`))))
          : h('p', { class: 'muted' }, 'Nothing sold yet.'),
        h('p', {}, h('a', { href: '/products' }, 'Browse all the books'))));
    }),
  ]);
}

export async function salesList(content) {
  await loadInto(content, () => Promise.all(['active', 'upcoming', 'ended'].map(
    (s) => api(`/sales?state=${s}&limit=50`, { auth: false }),
  )), ([live, soon, ended]) => {
    content.append(
      saleSection('Live now', live.items, 'No sale is running right now.'),
      saleSection('Upcoming', soon.items, 'No sale is scheduled.'),
      saleSection('Ended', ended.items, 'No sale has ended yet.'),
    );
  });
}

export async function salePage(content) {
  const id = Number(location.pathname.split('/')[2]);
  const clock = new ShopClock();
  let sale;
  await loadInto(content, async () => {
    const sent = performance.now();
    const data = await api(`/sales/${id}`, { auth: false });
    clock.sample(data.server_time, sent, performance.now());
    return data;
  }, (data) => {
    sale = data;
  });
  if (!sale) return;

  const p = sale.product;
  setTitle(p.name);
  // What the page believes; `apply` moves it, `render` shows it.
  const view = {
    state: sale.state,
    remaining: sale.remaining,
    startsAt: parseTime(sale.starts_at),
    endsAt: parseTime(sale.ends_at),
    busy: false,
  };

  // Announced when it changes (the sale opens, sells out, ends).
  const badge = h('span', { id: 'sale-state', class: 'badge', 'aria-live': 'polite' });
  const countdownLabel = h('span', { id: 'countdown-label' });
  const countdown = h('span', { id: 'countdown', role: 'timer', 'aria-live': 'off', 'aria-atomic': 'true' });
  const stock = h('p', { id: 'stock', class: 'stock', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const meter = h('div', { class: 'meter', 'aria-hidden': 'true' }, h('div', { class: 'meter-fill' }));
  const buy = h('button', { type: 'button', id: 'buy', class: 'buy' }, 'Buy now');
  const result = h('div', { id: 'result', class: 'result', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const holdSlot = h('div', { id: 'hold' });
  const live = h('p', { id: 'live', class: 'muted small' }, 'Connecting to live updates…');
  // A waiting-room sale sells only on this shopper's turn.
  const queue = sale.waiting_room
    ? queueBox({ saleId: id, clock, startsAt: parseTime(sale.starts_at), changed: () => render() })
    : null;

  content.replaceChildren(h('div', { class: 'sale' },
    h('section', { class: 'sale-info' },
      h('p', { class: 'row' }, badge, h('span', { class: 'price big' }, money(sale.price_cents, p.currency)),
        sale.price_cents < p.price_cents
          ? h('s', { class: 'muted' }, money(p.price_cents, p.currency)) : null),
      h('p', {}, p.description || ''),
      h('p', { class: 'muted small' }, `One per person${sale.per_user_limit > 1 ? ` (up to ${sale.per_user_limit})` : ''}. `,
        `${when(sale.starts_at)} – ${when(sale.ends_at)}`)),
    h('section', { class: 'sale-box', 'aria-label': 'Buy' },
      h('p', { class: 'countdown' }, countdownLabel, ' ', countdown),
      stock, meter, queue ? queue.el : null, buy, result, holdSlot, live)));

  function effectiveState() {
    // Between server messages the window edges are judged by the shop's clock.
    const now = clock.now();
    if (view.state === 'cancelled' || view.state === 'ended') return view.state;
    if (now >= view.endsAt) return 'ended';
    if (view.state === 'upcoming' && now >= view.startsAt) return view.remaining > 0 ? 'active' : 'sold_out';
    return view.state;
  }

  function render() {
    const state = effectiveState();
    badge.className = `badge badge-${state}`;
    const label = STATE_LABEL[state] || state;
    if (badge.textContent !== label) badge.textContent = label;
    const now = clock.now();
    if (state === 'upcoming') {
      countdownLabel.textContent = 'Starts in';
      countdown.textContent = duration(view.startsAt - now);
    } else if (state === 'active' || state === 'sold_out') {
      countdownLabel.textContent = 'Ends in';
      countdown.textContent = duration(view.endsAt - now);
    } else {
      countdownLabel.textContent = state === 'cancelled' ? 'This sale was cancelled.' : 'This sale has ended.';
      countdown.textContent = '';
    }
    const stockText = state === 'sold_out' || view.remaining === 0
      ? 'Sold out'
      : `${view.remaining} of ${sale.stock} left`;
    if (stock.textContent !== stockText) stock.textContent = stockText;
    meter.firstChild.style.width = `${sale.stock ? (100 * view.remaining) / sale.stock : 0}%`;
    const waiting = queue && !queue.canBuy();
    buy.disabled = view.busy || state !== 'active' || waiting;
    buy.hidden = Boolean(queue) && waiting && state === 'active';
    buy.textContent = state === 'sold_out' ? 'Sold out' : state === 'upcoming' ? 'Not started yet' : 'Buy now';
    buy.setAttribute('aria-describedby', 'stock countdown-label');
  }

  function apply(status) {
    clock.atLeast(status.server_time);
    view.state = status.state;
    view.remaining = status.remaining;
    view.startsAt = parseTime(status.starts_at);
    view.endsAt = parseTime(status.ends_at);
    if (queue) queue.apply(status);
    render();
  }

  // Two more quick samples sharpen the clock estimate.
  (async () => {
    for (let i = 0; i < 2; i += 1) {
      try {
        const { data, sent, received } = await timed(`/sales/${id}/status`);
        clock.sample(data.server_time, sent, received);
        apply(data);
      } catch { /* the first sample stands */ }
    }
  })();

  // While the stream is down, the cheap status is polled instead.
  let poll = null;
  const events = new EventSource(`/api/v1/sales/${id}/events`);
  events.addEventListener('status', (e) => {
    live.textContent = 'Live updates on.';
    if (poll) {
      clearInterval(poll);
      poll = null;
    }
    try { apply(JSON.parse(e.data)); } catch { /* ignore a garbled message */ }
  });
  events.addEventListener('error', () => {
    // EventSource reconnects by itself; say so rather than show stale stock as live.
    live.textContent = 'Live updates interrupted; reconnecting, and checking every 5 s meanwhile.';
    poll ??= setInterval(async () => {
      try {
        const { data, sent, received } = await timed(`/sales/${id}/status`);
        clock.sample(data.server_time, sent, received);
        apply(data);
      } catch { /* the note above already says updates are interrupted */ }
    }, 5000);
  });
  window.addEventListener('pagehide', () => {
    events.close();
    clearInterval(poll);
  });

  // A won hold: its countdown and the Pay button. When the hold runs out
  // the unit goes back, and the stock shown follows.
  function showHold(order) {
    holdSlot.replaceChildren(holdBox({ ...order, currency: p.currency }, clock, {
      onRunOut: () => {
        show('warn', h('strong', {}, 'Hold ran out. '), `Order ${order.number} was not paid in time. `,
          h('a', { href: `/orders/${order.id}` }, 'See the order'));
      },
    }));
  }

  function show(kind, ...parts) {
    result.className = `result result-${kind}`;
    result.replaceChildren(h('p', {}, ...parts));
  }

  async function purchase() {
    if (!session()) {
      show('warn', 'Sign in to buy. ', h('a', { href: signInHref() }, 'Sign in'), ' or ',
        h('a', { href: '/register' }, 'create an account'), '.');
      return;
    }
    view.busy = true;
    render();
    show('info', 'Buying…');
    try {
      const order = await api(`/sales/${id}/purchase`, { method: 'POST', body: { quantity: 1 } });
      if (queue) queue.used();
      if (order.status === 'pending_payment') {
        show('ok', h('strong', {}, 'Won! '), 'Order ', h('strong', { class: 'order-number' }, order.number),
          ' is held for you until you pay. ', h('a', { href: `/orders/${order.id}` }, 'See the order'));
        showHold(order);
      } else {
        show('ok', h('strong', {}, 'Bought! '), 'Your order number is ',
          h('strong', { class: 'order-number' }, order.number), '. ',
          h('a', { href: `/orders/${order.id}` }, 'See the order'));
      }
      // The stock with this order in it, without waiting for the next push.
      timed(`/sales/${id}/status`).then(({ data, sent, received }) => {
        clock.sample(data.server_time, sent, received);
        apply(data);
      }).catch(() => {});
    } catch (err) {
      outcome(err);
    } finally {
      view.busy = false;
      render();
    }
  }

  function outcome(err) {
    const e = err instanceof ApiError ? err : new ApiError(0, 'network', String(err));
    const retry = h('button', { type: 'button', class: 'retry', onclick: purchase }, 'Retry');
    switch (e.code) {
      case 'sold_out':
        view.remaining = 0;
        view.state = 'sold_out';
        show('bad', h('strong', {}, 'Sold out. '), 'Every unit has been sold.');
        break;
      case 'already_purchased': {
        const held = e.details && e.details.order_id;
        show('warn', h('strong', {}, 'Already bought. '), 'You already have an order in this sale (one per person). ',
          h('a', { href: held ? `/orders/${held}` : '/orders' }, held ? 'See the order' : 'See my orders'));
        // An order still waiting for payment can be paid from here.
        if (held) {
          api(`/orders/${held}`).then((o) => {
            if (o.status === 'pending_payment') showHold(o);
          }).catch(() => {});
        }
        break;
      }
      case 'sale_not_started':
        show('warn', h('strong', {}, 'Not started yet. '), 'The button opens when the sale starts.');
        timed(`/sales/${id}/status`).then(({ data, sent, received }) => {
          clock.sample(data.server_time, sent, received);
          apply(data);
        }).catch(() => {});
        break;
      case 'not_admitted':
        show('warn', h('strong', {}, 'Not your turn. '), 'This sale sells only to shoppers admitted from its queue.');
        if (queue) queue.refresh();
        break;
      case 'sale_ended':
        view.state = 'ended';
        show('bad', h('strong', {}, 'Ended. '), 'This sale is over.');
        break;
      case 'sale_cancelled':
        view.state = 'cancelled';
        show('bad', h('strong', {}, 'Cancelled. '), 'This sale was cancelled.');
        break;
      case 'rate_limited':
        show('warn', h('strong', {}, 'Slow down. '),
          `Too many tries; retry in ${e.retryAfter ?? 1} s. `, retry);
        break;
      case 'busy':
        show('warn', h('strong', {}, 'Busy, retry. '),
          `The shop is overloaded; nothing was bought. Retry in ${e.retryAfter ?? 1} s. `, retry);
        break;
      case 'unauthorized':
      case 'token_revoked':
        show('warn', 'You are signed out. ', h('a', { href: signInHref() }, 'Sign in'), ' to buy.');
        break;
      case 'network':
        show('bad', h('strong', {}, 'No answer. '),
          'The shop could not be reached, so we do not know whether it went through. Retry: a second order is never made. ', retry);
        break;
      default:
        show('bad', h('strong', {}, 'Not bought. '), `${e.message} `, retry);
    }
  }

  buy.addEventListener('click', purchase);
  render();
  // Back on the page with a hold in this sale that is not paid yet: show
  // it, with its countdown and Pay.
  if (session()) {
    api('/orders?limit=100').then(({ items }) => {
      const held = items.find((o) => o.sale_id === id && o.status === 'pending_payment');
      if (held && !holdSlot.firstChild) {
        show('ok', 'Order ', h('strong', { class: 'order-number' }, held.number),
          ' is held for you until you pay. ', h('a', { href: `/orders/${held.id}` }, 'See the order'));
        showHold(held);
      }
    }).catch(() => {});
  }
  // The countdown ticks on the shop's clock; the button opens at the start
  // without a reload.
  setInterval(render, 250);
}
