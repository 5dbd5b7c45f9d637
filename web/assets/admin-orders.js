// The admin's list of one sale's orders, on its live view: filter by status,
// page through, and cancel one (a paid one is refunded) after a confirm.

import { api } from './api.js';
import { h, money, when, errorBox, orderBadge, ORDER_LABEL } from './ui.js';

const PAGE = 50;

/** Draws the orders of `sale` into `section`; `changed` runs after a cancel. */
export function saleOrders(section, sale, changed = () => {}) {
  const status = h('select', { id: 'orders-status' },
    h('option', { value: '' }, 'All'),
    Object.entries(ORDER_LABEL).map(([v, label]) => h('option', { value: v }, label)));
  const refresh = h('button', { type: 'button', class: 'small secondary', id: 'orders-refresh' }, 'Refresh');
  const msg = h('div', { id: 'orders-msg', 'aria-live': 'polite' });
  const list = h('div');
  const older = h('button', { type: 'button', class: 'small secondary' }, 'Older');
  const newer = h('button', { type: 'button', class: 'small secondary' }, 'Newer');
  const pager = h('div', { class: 'row' }, newer, older);
  section.replaceChildren(h('h2', { id: 'h-orders' }, 'Orders'),
    h('div', { class: 'row filters' }, h('label', { for: 'orders-status' }, 'Status'), status, refresh),
    msg, list, pager);
  let offset = 0;

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status.value) q.set('status', status.value);
    list.setAttribute('aria-busy', 'true');
    try {
      const page = await api(`/admin/sales/${sale.id}/orders?${q}`);
      draw(page.items);
      newer.disabled = offset === 0;
      older.disabled = page.items.length < PAGE;
      pager.hidden = newer.disabled && older.disabled;
    } catch (err) {
      list.replaceChildren(errorBox(err, load));
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  function draw(items) {
    if (!items.length) {
      list.replaceChildren(h('p', { class: 'muted' }, status.value
        ? `No ${ORDER_LABEL[status.value].toLowerCase()} orders.` : 'No orders yet.'));
      return;
    }
    list.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { id: 'sale-orders' },
      h('caption', { class: 'sr-only' }, 'Orders of this sale, newest first'),
      h('thead', {}, h('tr', {}, ['Order', 'Buyer', 'Qty', 'Total', 'Status', 'Placed', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.map(row)))));
  }

  function row(o) {
    const slot = h('div', { class: 'inline' });
    const actions = h('div', { class: 'actions' });
    const live = ['pending_payment', 'confirmed', 'paid'].includes(o.status);
    if (live) {
      const paid = o.status === 'paid';
      actions.append(h('button', {
        type: 'button', class: 'small danger', onclick: () => confirmCancel(o, slot),
      }, paid ? 'Refund' : 'Cancel'));
    }
    actions.append(slot);
    return h('tr', { 'data-order': o.number },
      h('td', { class: 'order-number' }, o.number),
      h('td', {}, o.username),
      h('td', {}, o.quantity),
      h('td', { class: 'nowrap' }, money(o.total_cents, sale.product.currency)),
      h('td', {}, orderBadge(o.status)),
      h('td', {}, when(o.created_at)),
      h('td', {}, actions));
  }

  function confirmCancel(o, slot) {
    const paid = o.status === 'paid';
    const problem = h('div');
    const yes = h('button', {
      type: 'button',
      class: 'small danger',
      onclick: async () => {
        yes.disabled = true;
        try {
          const done = await api(`/admin/orders/${o.id}/cancel`, { method: 'POST' });
          msg.replaceChildren(h('p', { class: 'alert alert-ok', role: 'status' },
            `Order ${done.number} is now ${ORDER_LABEL[done.status].toLowerCase()}; its unit is back in the stock.`));
          changed();
          await load();
        } catch (err) {
          yes.disabled = false;
          problem.replaceChildren(errorBox(err, () => yes.click()));
        }
      },
    }, paid ? `Yes, refund ${o.number}` : `Yes, cancel ${o.number}`);
    slot.replaceChildren(h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm cancel' },
      h('span', {}, paid ? 'Refund the payment and cancel this order? ' : 'Cancel this order? '), yes,
      h('button', { type: 'button', class: 'small secondary', onclick: () => slot.replaceChildren() }, 'Keep it'),
      problem));
    yes.focus();
  }

  status.addEventListener('change', () => { offset = 0; load(); });
  refresh.addEventListener('click', load);
  older.addEventListener('click', () => { offset += PAGE; load(); });
  newer.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); load(); });
  return load();
}
