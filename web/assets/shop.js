// The shopper's pages: front page, sales list, the sale page (countdown on
// the shop's clock, live stock over SSE, the buy button), sign in, register
// and my orders.

import { api, timed, session, login, register, ApiError } from './api.js';
import {
  h, money, when, duration, parseTime, stateBadge, STATE_LABEL, errorBox, loadInto, field,
  setTitle, signInHref,
} from './ui.js';

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
            h('span', { class: 'name' }, p.name),
            h('span', { class: 'muted' }, ` · ${p.sell_count} sold · ${money(p.price_cents, p.currency)}`))))
          : h('p', { class: 'muted' }, 'Nothing sold yet.')));
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

/**
 * The shop's clock, estimated from answers that carry `server_time`: the
 * offset from this page's monotonic clock is taken from the answer that came
 * back fastest (its time lies mid-way through the round trip), and pushed
 * forward whenever a message shows the shop was already later than we
 * thought. The browser's own date and time play no part.
 */
class ShopClock {
  constructor() {
    this.offset = null;
    this.bestRtt = Infinity;
  }

  sample(serverIso, sent, received) {
    const rtt = received - sent;
    if (rtt < this.bestRtt) {
      this.bestRtt = rtt;
      this.offset = parseTime(serverIso) - (sent + received) / 2;
    }
    this.atLeast(serverIso);
  }

  // A message cannot arrive before the shop wrote it.
  atLeast(serverIso) {
    const floor = parseTime(serverIso) - performance.now();
    if (this.offset === null || floor > this.offset) this.offset = floor;
  }

  now() {
    return performance.now() + (this.offset ?? 0);
  }
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
  const live = h('p', { id: 'live', class: 'muted small' }, 'Connecting to live updates…');

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
      stock, meter, buy, result, live)));

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
    buy.disabled = view.busy || state !== 'active';
    buy.textContent = state === 'sold_out' ? 'Sold out' : state === 'upcoming' ? 'Not started yet' : 'Buy now';
    buy.setAttribute('aria-describedby', 'stock countdown-label');
  }

  function apply(status) {
    clock.atLeast(status.server_time);
    view.state = status.state;
    view.remaining = status.remaining;
    view.startsAt = parseTime(status.starts_at);
    view.endsAt = parseTime(status.ends_at);
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
      show('ok', h('strong', {}, 'Bought! '), 'Your order number is ',
        h('strong', { class: 'order-number' }, order.number), '. ',
        h('a', { href: '/orders' }, 'See my orders'));
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
      case 'already_purchased':
        show('warn', h('strong', {}, 'Already bought. '), 'You already have an order in this sale (one per person). ',
          h('a', { href: '/orders' }, 'See my orders'));
        break;
      case 'sale_not_started':
        show('warn', h('strong', {}, 'Not started yet. '), 'The button opens when the sale starts.');
        timed(`/sales/${id}/status`).then(({ data, sent, received }) => {
          clock.sample(data.server_time, sent, received);
          apply(data);
        }).catch(() => {});
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
  // The countdown ticks on the shop's clock; the button opens at the start
  // without a reload.
  setInterval(render, 250);
}

export async function loginPage(content) {
  const next = new URLSearchParams(location.search).get('next');
  // Only paths on this site, never another origin.
  const target = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('div', { id: 'form-msg', 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'form narrow', novalidate: true },
    field('Username or email', user), field('Password', pass), submit, msg,
    h('p', {}, 'New here? ', h('a', { href: '/register' }, 'Create an account')),
    h('p', {}, h('a', { href: '/forgot' }, 'Forgot your password?')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!user.value || !pass.value) {
      msg.replaceChildren(h('p', { class: 'alert alert-error', role: 'alert' }, 'Enter your username and password.'));
      return;
    }
    submit.disabled = true;
    msg.replaceChildren(h('p', { class: 'muted' }, 'Signing in…'));
    try {
      await login(user.value.trim(), pass.value);
      location.assign(target);
    } catch (err) {
      msg.replaceChildren(err.code === 'invalid_credentials'
        ? h('p', { class: 'alert alert-error', role: 'alert' }, 'Wrong username or password.')
        : errorBox(err, () => form.requestSubmit()));
      submit.disabled = false;
    }
  });
  content.replaceChildren(form);
  user.focus();
}

export async function registerPage(content) {
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, minlength: 3, maxlength: 32 });
  const email = h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'email', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8, maxlength: 128 });
  const msg = h('div', { id: 'form-msg', 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit' }, 'Create account');
  const form = h('form', { class: 'form narrow', novalidate: true },
    field('Username', user, '3 to 32 letters, digits, _ . or -'),
    field('Email', email),
    field('Password', pass, 'At least 8 characters'),
    submit, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      await register(user.value.trim(), email.value.trim(), pass.value);
      location.assign('/');
    } catch (err) {
      const text = {
        username_taken: 'That username is taken.',
        email_taken: 'An account with that email exists. Sign in instead.',
      }[err.code];
      msg.replaceChildren(text
        ? h('p', { class: 'alert alert-error', role: 'alert' }, text)
        : errorBox(err, () => form.requestSubmit()));
      submit.disabled = false;
    }
  });
  content.replaceChildren(form);
  user.focus();
}

export async function forgotPage(content) {
  const email = h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'email', required: true });
  const msg = h('div', { id: 'form-msg', 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit' }, 'Send me a reset link');
  const form = h('form', { class: 'form narrow', novalidate: true },
    h('p', {}, 'Enter the email address of your account. We will send a link to choose a new password.'),
    field('Email', email), submit, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      await api('/auth/forgot', { method: 'POST', body: { email: email.value.trim() }, auth: false });
      // The same answer whether or not the address has an account.
      form.replaceChildren(h('p', { class: 'alert alert-ok', role: 'status' },
        'If this address belongs to an account, a reset link is on its way. It works once, for one hour.'));
    } catch (err) {
      msg.replaceChildren(errorBox(err, () => form.requestSubmit()));
      submit.disabled = false;
    }
  });
  content.replaceChildren(form);
  email.focus();
}

export async function resetPage(content) {
  const token = new URLSearchParams(location.search).get('token') || '';
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8, maxlength: 128 });
  const again = h('input', { id: 'confirm', name: 'confirm', type: 'password', autocomplete: 'new-password', required: true, minlength: 8, maxlength: 128 });
  const msg = h('div', { id: 'form-msg', 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit' }, 'Set the new password');
  const form = h('form', { class: 'form narrow', novalidate: true },
    field('New password', pass, 'At least 8 characters'), field('The same again', again), submit, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (pass.value !== again.value) {
      msg.replaceChildren(h('p', { class: 'alert alert-error', role: 'alert' }, 'The two passwords differ.'));
      return;
    }
    submit.disabled = true;
    try {
      await api('/auth/reset', { method: 'POST', body: { token, password: pass.value }, auth: false });
      form.replaceChildren(h('p', { class: 'alert alert-ok', role: 'status' },
        'Your password is changed. ', h('a', { href: '/login' }, 'Sign in'), ' with it.'));
    } catch (err) {
      msg.replaceChildren(err.code === 'invalid_token'
        ? h('p', { class: 'alert alert-error', role: 'alert' }, err.message, ' ',
          h('a', { href: '/forgot' }, 'Ask for a new link'))
        : errorBox(err, () => form.requestSubmit()));
      submit.disabled = false;
    }
  });
  content.replaceChildren(form);
  pass.focus();
}

export async function ordersPage(content) {
  if (!session()) {
    content.replaceChildren(h('p', {}, h('a', { href: signInHref() }, 'Sign in'), ' to see your orders.'));
    return;
  }
  await loadInto(content, async () => {
    const orders = (await api('/orders?limit=100')).items;
    // Orders name their product by id; read each product once.
    const ids = [...new Set(orders.map((o) => o.product_id))];
    const products = await Promise.all(ids.map((pid) => api(`/products/${pid}`, { auth: false })));
    return { orders, products: new Map(products.map((p) => [p.id, p])) };
  }, ({ orders, products }) => {
    if (!orders.length) {
      content.append(h('p', {}, 'No orders yet. ', h('a', { href: '/sales' }, 'See the sales')));
      return;
    }
    content.append(h('div', { class: 'table-wrap' }, h('table', { id: 'orders' },
      h('caption', { class: 'sr-only' }, 'My orders, newest first'),
      h('thead', {}, h('tr', {}, ['Order', 'Product', 'Qty', 'Total', 'Status', 'Placed'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, orders.map((o) => {
        const p = products.get(o.product_id);
        return h('tr', {},
          h('td', { class: 'order-number' }, o.number),
          h('td', {}, h('a', { href: `/sales/${o.sale_id}` }, p ? p.name : `#${o.product_id}`)),
          h('td', {}, o.quantity),
          h('td', {}, money(o.total_cents, p ? p.currency : 'EUR')),
          h('td', {}, o.status),
          h('td', {}, when(o.created_at)));
      })))));
  });
}
