// The waiting room on a sale page: join the queue, the place in line and the
// estimated wait (moved by the sale's live status, not by polling), then the
// turn to buy with the time left to use it.

import { api, session, ApiError } from './api.js';
import { h, duration, parseTime, signInHref } from './ui.js';

/**
 * The queue box of sale `saleId`. `apply(status)` follows the sale's live
 * status; `canBuy()` says whether this shopper's turn is on now; `used()`
 * records a purchase made on it; `refresh()` reads the ticket again.
 * `changed` is called whenever the answer of `canBuy()` may have moved.
 */
export function queueBox({ saleId, clock, startsAt, changed }) {
  // `ticket`: null before the first read, false when not in the line.
  const view = { ticket: null, through: 0, rate: 100, remaining: 1, startsAt, joining: false, reading: false };
  const text = h('p', { id: 'queue-text', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const detail = h('p', { id: 'queue-detail', class: 'muted small' });
  const join = h('button', { type: 'button', id: 'queue-join', class: 'buy' }, 'Join the queue');
  const box = h('div', { id: 'queue', class: 'queue' }, text, detail, join);

  // Where the ticket stands now, on the shop's clock.
  function state() {
    const t = view.ticket;
    if (!t) return t === false ? 'none' : 'unknown';
    if (t.state === 'used') return 'used';
    if (t.position !== null && t.position <= view.through) {
      if (!t.admitted_until) return 'turn-unknown';
      return clock.now() < parseTime(t.admitted_until) ? 'admitted' : 'lapsed';
    }
    if (view.remaining === 0 || t.state === 'sold_out') return 'sold_out';
    return 'waiting';
  }

  async function read() {
    if (view.reading || !session()) return;
    view.reading = true;
    try {
      view.ticket = await api(`/sales/${saleId}/queue`);
      view.through = Math.max(view.through, view.ticket.admitted_through);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) view.ticket = false;
    } finally {
      view.reading = false;
      render();
    }
  }

  async function joinQueue() {
    if (!session()) return;
    view.joining = true;
    render();
    try {
      view.ticket = await api(`/sales/${saleId}/queue`, { method: 'POST' });
      view.through = Math.max(view.through, view.ticket.admitted_through);
    } catch (e) {
      detail.textContent = e instanceof ApiError ? e.message : 'The shop could not be reached; try again.';
    } finally {
      view.joining = false;
      render();
    }
  }

  let shown = '';
  function render() {
    const s = state();
    const t = view.ticket;
    const now = clock.now();
    join.hidden = !(s === 'none' || !session());
    join.disabled = view.joining || !session();
    let main;
    let more = '';
    if (!session()) {
      main = h('span', {}, 'This sale has a waiting room. ', h('a', { href: signInHref() }, 'Sign in'), ' to join the queue.');
    } else if (s === 'unknown') {
      main = 'Checking your place in the queue…';
    } else if (s === 'none') {
      main = 'This sale has a waiting room.';
      more = now < view.startsAt
        ? 'Everyone who joins before the start gets a random place when it opens: there is no need to rush.'
        : 'Join to be placed behind everyone already in line.';
    } else if (s === 'waiting' && t.position === null) {
      main = 'You are in the queue.';
      more = 'Places are drawn at random when the sale starts.';
    } else if (s === 'waiting') {
      const ahead = Math.max(0, t.position - view.through - 1);
      main = `Your place: #${t.position} · ${ahead} ahead of you`;
      more = `About ${duration((1000 * (ahead + 1)) / view.rate)} to wait. Keep this page open: it moves by itself.`;
    } else if (s === 'admitted') {
      main = 'It is your turn: buy now.';
      more = `${duration(parseTime(t.admitted_until) - now)} left to buy.`;
    } else if (s === 'turn-unknown') {
      main = 'It is your turn.';
    } else if (s === 'lapsed') {
      main = 'Your turn passed unused.';
      more = 'Each place is admitted once.';
    } else if (s === 'used') {
      main = 'You bought with your turn.';
    } else {
      main = 'Sold out before your turn.';
      more = 'Everything was sold to the shoppers ahead of you.';
    }
    const key = `${s}|${typeof main === 'string' ? main : 'signin'}`;
    if (key !== shown) {
      shown = key;
      text.replaceChildren(main);
      changed();
    }
    if (detail.textContent !== more) detail.textContent = more;
    box.dataset.state = s;
    // After the start a pre-queue ticket learns its place; at its turn a
    // ticket learns until when (one read each).
    if ((s === 'waiting' && t.position === null && now >= view.startsAt + 300) || s === 'turn-unknown') read();
  }

  join.addEventListener('click', joinQueue);
  read();
  setInterval(render, 500);
  return {
    el: box,
    apply(status) {
      if (status.admitted_through !== null && status.admitted_through !== undefined) {
        view.through = Math.max(view.through, status.admitted_through);
        view.rate = status.admit_per_sec || view.rate;
      }
      view.remaining = status.remaining;
      view.startsAt = parseTime(status.starts_at);
      render();
    },
    canBuy: () => state() === 'admitted',
    used() {
      if (view.ticket) view.ticket = { ...view.ticket, state: 'used' };
      render();
    },
    refresh: read,
  };
}
