// Small helpers shared by the pages: building elements, formatting money and
// times, and the one way every failed request is shown (with a Retry button).

/** Creates an element: h('a', {href: '/'}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function money(cents, currency = 'EUR') {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(cents / 100);
  } catch {
    return `${(cents / 100).toFixed(2)} ${currency}`;
  }
}

/** Milliseconds since the epoch of an RFC 3339 time (any fraction digits). */
export function parseTime(iso) {
  return Date.parse(String(iso).replace(/(\.\d{3})\d+/, '$1'));
}

export function when(iso) {
  return new Date(parseTime(iso)).toLocaleString(undefined, {
    dateStyle: 'medium', timeStyle: 'short',
  });
}

/** "1 d 02:03:04" / "02:03:04" / "03:04". */
export function duration(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  const clock = hh || d ? `${two(hh)}:${two(mm)}:${two(ss)}` : `${two(mm)}:${two(ss)}`;
  return d ? `${d} d ${clock}` : clock;
}

export const STATE_LABEL = {
  upcoming: 'Upcoming',
  active: 'Live',
  sold_out: 'Sold out',
  ended: 'Ended',
  cancelled: 'Cancelled',
};

export function stateBadge(state) {
  return h('span', { class: `badge badge-${state}` }, STATE_LABEL[state] || state);
}

/** What a failed request means for the person looking at the page. */
export function describe(err) {
  const wait = err.retryAfter ? ` Retry in ${err.retryAfter} s.` : '';
  switch (err.code) {
    case 'network': return err.message;
    case 'rate_limited': return `Slow down: too many requests.${wait}`;
    case 'busy': return `The shop is busy right now.${wait || ' Please retry.'}`;
    case 'unauthorized':
    case 'token_revoked': return 'You are signed out. Please sign in again.';
    case 'forbidden': return 'Not allowed: your account may not see this.';
    case 'not_found': return 'Not found.';
    default: return err.message || 'Something went wrong.';
  }
}

/** A visible, announced failure with a Retry button that calls `retry`. */
export function errorBox(err, retry) {
  const box = h('div', { class: 'alert alert-error', role: 'alert' },
    h('p', {}, describe(err)));
  if (err.details && err.details.fields) {
    box.append(h('ul', {}, Object.entries(err.details.fields).map(([f, m]) => h('li', {}, `${f}: ${m}`))));
  }
  if (retry && !['forbidden', 'not_found', 'unauthorized', 'token_revoked'].includes(err.code)) {
    box.append(h('button', { type: 'button', class: 'retry', onclick: retry }, 'Retry'));
  }
  if (err.code === 'unauthorized' || err.code === 'token_revoked') {
    box.append(h('a', { href: signInHref() }, 'Sign in'));
  }
  return box;
}

export function signInHref() {
  return `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

/**
 * Loads into `container`: shows "Loading…", runs `load()`, then `render(data)`;
 * on failure shows the error and a Retry button that runs it all again.
 */
export async function loadInto(container, load, render) {
  const run = async () => {
    container.replaceChildren(h('p', { class: 'muted', role: 'status' }, 'Loading…'));
    let data;
    try {
      data = await load();
    } catch (err) {
      container.replaceChildren(errorBox(err, run));
      return;
    }
    container.replaceChildren();
    render(data);
  };
  await run();
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintEl = hint ? h('small', { id: `${id}-hint`, class: 'hint' }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
}

/** `<input type="datetime-local">` value (browser's zone) to RFC 3339 UTC. */
export function localToIso(value) {
  return new Date(value).toISOString();
}

/** RFC 3339 to a `datetime-local` value in the browser's zone. */
export function isoToLocal(iso) {
  const d = new Date(parseTime(iso));
  const two = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Sets the page heading and the document title. */
export function setTitle(text) {
  document.getElementById('title').textContent = text;
  document.title = `${text} · flashsale`;
}

/** "Not allowed" for a page this user may not use; shows no data. */
export function notAllowed(container, what) {
  container.replaceChildren(h('div', { class: 'alert alert-error', role: 'alert' },
    h('p', {}, h('strong', {}, 'Not allowed. '), what),
    h('p', {}, h('a', { href: '/' }, 'Back to the shop'))));
}

/**
 * The shop's clock, estimated from answers that carry `server_time`: the
 * offset from this page's monotonic clock is taken from the answer that came
 * back fastest (its time lies mid-way through the round trip), and pushed
 * forward whenever a message shows the shop was already later than we
 * thought. The browser's own date and time play no part.
 */
export class ShopClock {
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

  /**
   * A sample from an HTTP `Date` (whole seconds, see api.js `shopDate`): the
   * shop's time was somewhere in that second, taken as its middle.
   */
  sampleDate({ date, sent, received }) {
    this.sample(new Date(date + 500).toISOString(), sent, received);
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

/** What each order status means, in a word or two. */
export const ORDER_LABEL = {
  pending_payment: 'Waiting for payment',
  paid: 'Paid',
  confirmed: 'Confirmed',
  payment_failed: 'Payment failed',
  expired: 'Expired',
  cancelled: 'Cancelled',
  refunded: 'Refunded',
};

export function orderBadge(status) {
  return h('span', { class: `badge order-${status}` }, ORDER_LABEL[status] || status);
}

/** Shows the number of copies in the cart in the navigation's cart link. */
export function showCartCount(cart) {
  const el = document.getElementById('cart-count');
  if (!el) return;
  const n = cart.items.reduce((sum, i) => sum + i.quantity, 0);
  el.textContent = n ? ` (${n})` : '';
  el.closest('a')?.setAttribute('aria-label', `Cart, ${n} ${n === 1 ? 'copy' : 'copies'}`);
}

/** What a product's catalog stock means for a shopper. */
export function stockText(product) {
  if (product.stock <= 0) return 'Sold only in flash sales';
  return `${product.stock} in stock`;
}
