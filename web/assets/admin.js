// The admin's pages: products and sales (create, schedule, reschedule,
// cancel), the live view of one sale (with its orders), and users with
// their roles. The role check here only decides what to draw; the API
// refuses everyone else.

import { api, session } from './api.js';
import { saleOrders } from './admin-orders.js';
import {
  h, money, when, stateBadge, errorBox, loadInto, field, setTitle, notAllowed, signInHref,
  localToIso, isoToLocal, STATE_LABEL,
} from './ui.js';

/** True when this viewer may use admin pages; otherwise says why and shows nothing. */
function guard(content) {
  const s = session();
  if (!s) {
    content.replaceChildren(h('p', {}, 'Admin pages need an admin account. ',
      h('a', { href: signInHref() }, 'Sign in')));
    return false;
  }
  if (s.user.role !== 'admin') {
    notAllowed(content, 'These pages are for admins only.');
    return false;
  }
  return true;
}

function formMessage() {
  return h('div', { class: 'form-msg', 'aria-live': 'polite' });
}

function ok(msg, text) {
  msg.replaceChildren(h('p', { class: 'alert alert-ok', role: 'status' }, text));
}

function failed(msg, err, retry) {
  msg.replaceChildren(errorBox(err, retry));
}

function centsFrom(value) {
  const n = Number(String(value).replace(',', '.'));
  return Number.isFinite(n) ? Math.round(n * 100) : NaN;
}

export async function adminPage(content) {
  if (!guard(content)) return;
  const products = h('section', { 'aria-labelledby': 'h-new-product' });
  const schedule = h('section', { 'aria-labelledby': 'h-schedule' });
  const sales = h('section', { 'aria-labelledby': 'h-sales' });
  content.replaceChildren(h('div', { class: 'grid2' }, products, schedule), sales);

  let refreshSales = async () => {};
  let productOptions = [];

  // --- create a product ---
  const pName = h('input', { id: 'product-name', required: true, maxlength: 200 });
  const pDesc = h('textarea', { id: 'product-description', rows: 3, maxlength: 5000 });
  const pPrice = h('input', { id: 'product-price', inputmode: 'decimal', required: true, placeholder: '24.90' });
  const pCurrency = h('input', { id: 'product-currency', value: 'EUR', maxlength: 3, required: true });
  const pSeller = h('select', { id: 'product-seller' }, h('option', { value: '' }, 'Myself (admin)'));
  const pMsg = formMessage();
  const pForm = h('form', { class: 'form', novalidate: true },
    field('Name', pName), field('Description', pDesc), field('Price', pPrice, 'In units, e.g. 24.90'),
    field('Currency', pCurrency), field('Seller', pSeller), h('button', { type: 'submit' }, 'Create product'), pMsg);
  products.append(h('h2', { id: 'h-new-product' }, 'New product'), pForm);

  // --- schedule a sale ---
  const sProduct = h('select', { id: 'sale-product', required: true });
  const sStart = h('input', { id: 'sale-start', type: 'datetime-local', step: 1, required: true });
  const sEnd = h('input', { id: 'sale-end', type: 'datetime-local', step: 1, required: true });
  const sStock = h('input', { id: 'sale-stock', type: 'number', min: 1, required: true, value: 100 });
  const sPrice = h('input', { id: 'sale-price', inputmode: 'decimal', placeholder: 'product price' });
  const sLimit = h('input', { id: 'sale-limit', type: 'number', min: 1, value: 1 });
  const sMsg = formMessage();
  const sForm = h('form', { class: 'form', novalidate: true },
    field('Product', sProduct), field('Starts', sStart, 'Your local time'), field('Ends', sEnd),
    field('Stock', sStock), field('Sale price', sPrice, 'Leave empty for the product price'),
    field('Per person', sLimit), h('button', { type: 'submit' }, 'Schedule sale'), sMsg);
  schedule.append(h('h2', { id: 'h-schedule' }, 'Schedule a sale'), sForm);
  const start = new Date(Date.now() + 3600e3);
  start.setMinutes(0, 0, 0);
  sStart.value = isoToLocal(start.toISOString());
  sEnd.value = isoToLocal(new Date(start.getTime() + 3600e3).toISOString());

  function fillProducts(list, selected) {
    productOptions = list;
    sProduct.replaceChildren(...list.map((p) => h('option', { value: p.id, selected: String(p.id) === String(selected) },
      `${p.name} (${money(p.price_cents, p.currency)})`)));
  }

  async function loadProducts(selected) {
    const list = await api('/products?sort=newest&limit=100', { auth: false });
    fillProducts(list.items, selected);
  }

  pForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      name: pName.value.trim(),
      description: pDesc.value,
      price_cents: centsFrom(pPrice.value),
      currency: pCurrency.value.trim().toUpperCase(),
    };
    if (pSeller.value) body.seller_id = Number(pSeller.value);
    try {
      const p = await api('/products', { method: 'POST', body });
      ok(pMsg, `Created “${p.name}” (#${p.id}).`);
      pForm.reset();
      pCurrency.value = 'EUR';
      await loadProducts(p.id).catch((err) => failed(sMsg, err, () => loadProducts(p.id)));
    } catch (err) {
      failed(pMsg, err, () => pForm.requestSubmit());
    }
  });

  sForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!sStart.value || !sEnd.value) {
      sMsg.replaceChildren(h('p', { class: 'alert alert-error', role: 'alert' }, 'Give a start and an end.'));
      return;
    }
    const body = {
      product_id: Number(sProduct.value),
      starts_at: localToIso(sStart.value),
      ends_at: localToIso(sEnd.value),
      stock: Number(sStock.value),
      per_user_limit: Number(sLimit.value || 1),
    };
    if (sPrice.value.trim()) body.price_cents = centsFrom(sPrice.value);
    try {
      const sale = await api('/sales', { method: 'POST', body });
      ok(sMsg, `Scheduled sale #${sale.id} of “${sale.product.name}”, starting ${when(sale.starts_at)}.`);
      await refreshSales();
    } catch (err) {
      failed(sMsg, err, () => sForm.requestSubmit());
    }
  });

  // --- every sale, with reschedule and cancel ---
  const salesBody = h('div');
  sales.append(h('h2', { id: 'h-sales' }, 'Sales'), salesBody);

  function saleRow(sale) {
    const actions = h('div', { class: 'actions' });
    const row = h('tr', { 'data-sale': sale.id },
      h('td', {}, `#${sale.id}`),
      h('td', {}, sale.product.name),
      h('td', {}, stateBadge(sale.state)),
      h('td', {}, `${when(sale.starts_at)} – ${when(sale.ends_at)}`),
      h('td', {}, `${sale.remaining} / ${sale.stock}`),
      h('td', { class: 'nowrap' }, money(sale.price_cents, sale.product.currency)),
      h('td', {}, actions));
    actions.append(h('a', { href: `/admin/sales/${sale.id}` }, 'Live view'));
    const editable = sale.state === 'upcoming';
    const open = !['ended', 'cancelled'].includes(sale.state);
    const slot = h('div', { class: 'inline' });
    if (editable) {
      actions.append(h('button', {
        type: 'button', class: 'small', onclick: () => reschedule(sale, slot),
      }, 'Reschedule'));
    }
    if (open) {
      actions.append(h('button', {
        type: 'button', class: 'small danger', onclick: () => confirmCancel(sale, slot),
      }, 'Cancel'));
    }
    actions.append(slot);
    return row;
  }

  function reschedule(sale, slot) {
    const a = h('input', { type: 'datetime-local', step: 1, value: isoToLocal(sale.starts_at) });
    const b = h('input', { type: 'datetime-local', step: 1, value: isoToLocal(sale.ends_at) });
    const stock = h('input', { type: 'number', min: 1, value: sale.stock });
    const msg = formMessage();
    const form = h('form', { class: 'form compact', novalidate: true },
      field(`New start of #${sale.id}`, a), field('New end', b), field('Stock', stock),
      h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save'),
        h('button', { type: 'button', class: 'secondary', onclick: () => slot.replaceChildren() }, 'Close')), msg);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        await api(`/sales/${sale.id}`, {
          method: 'PATCH',
          body: { starts_at: localToIso(a.value), ends_at: localToIso(b.value), stock: Number(stock.value) },
        });
        await refreshSales();
      } catch (err) {
        failed(msg, err, () => form.requestSubmit());
      }
    });
    slot.replaceChildren(form);
    a.focus();
  }

  function confirmCancel(sale, slot) {
    const msg = formMessage();
    const yes = h('button', {
      type: 'button',
      class: 'small danger',
      onclick: async () => {
        try {
          await api(`/sales/${sale.id}`, { method: 'PATCH', body: { cancelled: true } });
          await refreshSales();
        } catch (err) {
          failed(msg, err, () => yes.click());
        }
      },
    }, `Yes, cancel #${sale.id}`);
    slot.replaceChildren(h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm cancel' },
      h('span', {}, 'Cancel this sale for good? '), yes,
      h('button', { type: 'button', class: 'small secondary', onclick: () => slot.replaceChildren() }, 'Keep it'), msg));
    yes.focus();
  }

  refreshSales = () => loadInto(salesBody, () => api('/sales?limit=100'), (list) => {
    salesBody.append(h('div', { class: 'table-wrap' }, h('table', { id: 'sales' },
      h('caption', { class: 'sr-only' }, 'All sales, by start'),
      h('thead', {}, h('tr', {}, ['Sale', 'Product', 'State', 'Window', 'Left', 'Price', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, list.items.map(saleRow)))));
  });

  await Promise.all([
    loadInto(h('div'), () => loadProducts(), () => {}).catch(() => {}),
    api('/admin/users?limit=100').then((u) => {
      pSeller.append(...u.items.filter((x) => x.role === 'seller').map((x) => h('option', { value: x.id }, x.username)));
    }).catch((err) => {
      if (err.code === 'forbidden') notAllowed(content, 'These pages are for admins only.');
      else failed(pMsg, err, () => location.reload());
    }),
    refreshSales(),
  ]);
  if (!productOptions.length && !sProduct.options.length) {
    sProduct.append(h('option', { value: '' }, 'Create a product first'));
  }
}

export async function adminSalePage(content) {
  if (!guard(content)) return;
  const id = Number(location.pathname.split('/')[3]);
  setTitle(`Live sale #${id}`);
  const figures = h('dl', { class: 'figures', id: 'stats', 'aria-live': 'polite' });
  const head = h('div');
  const note = h('p', { class: 'muted small', id: 'refreshed' });
  const problem = h('div');
  const orders = h('section', { 'aria-labelledby': 'h-orders' });
  content.replaceChildren(head, figures, problem, note, orders);

  let sale;
  try {
    sale = await api(`/sales/${id}`);
  } catch (err) {
    if (err.code === 'not_found') {
      content.replaceChildren(h('p', { role: 'alert' }, `There is no sale #${id}. `, h('a', { href: '/admin' }, 'All sales')));
    } else {
      content.replaceChildren(errorBox(err, () => adminSalePage(content)));
    }
    return;
  }
  setTitle(`Live: ${sale.product.name}`);
  const badge = stateBadge(sale.state);
  badge.id = 'sale-state';
  head.append(h('p', { class: 'row' }, badge,
    h('span', {}, `${when(sale.starts_at)} – ${when(sale.ends_at)}`),
    h('span', { class: 'muted' }, `${money(sale.price_cents, sale.product.currency)} each`)),
  h('div', { class: 'meter big', 'aria-hidden': 'true' }, h('div', { class: 'meter-fill' })));

  function figure(label, key, value) {
    return h('div', { class: 'figure' }, h('dt', {}, label), h('dd', { 'data-key': key }, value));
  }

  function show(stats) {
    figures.replaceChildren(
      figure('Sold', 'sold', stats.sold),
      figure('Remaining', 'remaining', stats.remaining),
      figure('Waiting for payment', 'pending', stats.pending),
      figure('Paid', 'paid', stats.paid),
      figure('Buyers', 'buyers', stats.buyers),
      figure('Orders', 'orders', stats.orders),
      figure('Revenue', 'revenue', money(stats.revenue_cents, sale.product.currency)),
      figure('Stock', 'stock', stats.stock),
    );
    head.querySelector('.meter-fill').style.width = `${stats.stock ? (100 * stats.sold) / stats.stock : 0}%`;
    note.textContent = `Refreshes by itself every 2 s · last at ${new Date().toLocaleTimeString()}`;
  }

  let stopped = false;
  async function tick() {
    try {
      const stats = await api(`/admin/sales/${id}/stats`);
      problem.replaceChildren();
      show(stats);
    } catch (err) {
      if (err.code === 'forbidden') {
        stopped = true;
        notAllowed(content, 'These pages are for admins only.');
        return;
      }
      problem.replaceChildren(errorBox(err, tick));
    }
  }
  await tick();
  if (stopped) return;
  // A cancel changes the figures at once, not at the next tick.
  await saleOrders(orders, sale, tick);
  // Stats come from the database every 2 s; the state badge follows SSE.
  const timer = setInterval(() => { if (!stopped) tick(); }, 2000);
  const events = new EventSource(`/api/v1/sales/${id}/events`);
  events.addEventListener('status', (e) => {
    try {
      const s = JSON.parse(e.data);
      badge.className = `badge badge-${s.state}`;
      badge.textContent = STATE_LABEL[s.state] || s.state;
    } catch { /* ignore a garbled message */ }
  });
  window.addEventListener('pagehide', () => { clearInterval(timer); events.close(); });
}

export async function adminUsersPage(content) {
  if (!guard(content)) return;
  await loadInto(content, () => api('/admin/users?limit=100'), (list) => {
    content.append(h('div', { class: 'table-wrap' }, h('table', { id: 'users' },
      h('caption', { class: 'sr-only' }, 'Users'),
      h('thead', {}, h('tr', {}, ['User', 'Email', 'Role', 'Status', 'Joined'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, list.items.map(userRow)))));
  });
  const alert = content.querySelector('[role=alert]');
  if (alert && /Not allowed/.test(alert.textContent)) notAllowed(content, 'These pages are for admins only.');
}

function userRow(u) {
  const me = session().user.id === u.id;
  const role = h('select', { id: `role-${u.id}`, 'aria-label': `Role of ${u.username}`, disabled: me },
    ['customer', 'seller', 'admin'].map((r) => h('option', { value: r, selected: r === u.role }, r)));
  const save = h('button', { type: 'button', class: 'small', disabled: me }, 'Save role');
  const msg = h('span', { class: 'small', 'aria-live': 'polite' });
  save.addEventListener('click', async () => {
    save.disabled = true;
    msg.textContent = 'Saving…';
    try {
      const updated = await api(`/admin/users/${u.id}`, { method: 'PATCH', body: { role: role.value } });
      msg.textContent = `Saved: ${updated.role}.`;
    } catch (err) {
      msg.replaceChildren(errorBox(err, () => save.click()));
    } finally {
      save.disabled = false;
    }
  });
  return h('tr', { 'data-user': u.username },
    h('td', {}, u.username),
    h('td', {}, u.email),
    h('td', {}, h('div', { class: 'row' }, role, save), msg),
    h('td', {}, u.disabled ? 'disabled' : 'active'),
    h('td', {}, when(u.created_at)));
}
