// The seller's page: my products with their sell counts and catalog stock
// (which the seller sets here), and revenue by month (an admin sees every seller's revenue, as the API gives it).

import { api, session } from './api.js';
import {
  h, money, loadInto, field, notAllowed, signInHref, describe,
} from './ui.js';

/** The copies of `p` for catalog orders, changed in place (0: only in sales). */
function stockForm(p) {
  const input = h('input', {
    id: `stock-${p.id}`, type: 'number', min: 0, max: 100000000, step: 1, value: p.stock,
    class: 'qty', 'aria-label': `Catalog stock of ${p.name}`,
  });
  const said = h('span', { class: 'small', role: 'status', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', class: 'secondary small', 'aria-label': `Save the stock of ${p.name}` }, 'Save');
  const form = h('form', { class: 'line-form', novalidate: true }, input, save, said);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!/^\d+$/.test(text) || Number(text) > 100000000) {
      said.textContent = 'A whole number from 0 to 100000000.';
      return;
    }
    save.disabled = true;
    said.textContent = 'Saving…';
    try {
      const now = await api(`/products/${p.id}`, { method: 'PATCH', body: { stock: Number(text) } });
      input.value = now.stock;
      said.textContent = now.stock ? `Saved: ${now.stock} in stock.` : 'Saved: sold only in flash sales.';
    } catch (err) {
      said.textContent = describe(err);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

export async function sellerPage(content) {
  const s = session();
  if (!s) {
    content.replaceChildren(h('p', {}, h('a', { href: signInHref() }, 'Sign in'), ' as a seller to see your products.'));
    return;
  }
  if (s.user.role !== 'seller' && s.user.role !== 'admin') {
    notAllowed(content, 'This page is for sellers.');
    return;
  }
  const products = h('section', { 'aria-labelledby': 'h-products' });
  const revenue = h('section', { 'aria-labelledby': 'h-revenue' });
  content.replaceChildren(products, revenue);

  const list = h('div');
  products.append(h('h2', { id: 'h-products' }, 'My products'), list);
  const loadProducts = loadInto(list, () => api(`/products?seller_id=${s.user.id}&sort=best_selling&limit=100`, { auth: false }), ({ items }) => {
    if (!items.length) {
      list.append(h('p', { class: 'muted' }, 'You have no products yet.'));
      return;
    }
    list.append(h('div', { class: 'table-wrap' }, h('table', { id: 'my-products' },
      h('caption', { class: 'sr-only' }, 'My products, best selling first'),
      h('thead', {}, h('tr', {}, ['Product', 'Price', 'Catalog stock', 'Sold'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.map((p) => h('tr', { 'data-product': p.id },
        h('td', {}, h('a', { href: `/products/${p.id}` }, p.name)),
        h('td', {}, money(p.price_cents, p.currency)),
        h('td', {}, stockForm(p)),
        h('td', { class: 'num sell-count' }, p.sell_count)))))));
  });

  const month = h('input', { id: 'month', type: 'month', required: true });
  const report = h('div', { id: 'revenue', 'aria-live': 'polite' });
  const form = h('form', { class: 'form inline-form', novalidate: true },
    field('Month', month, 'Months are counted in UTC'), h('button', { type: 'submit' }, 'Show'));
  revenue.append(h('h2', { id: 'h-revenue' }, 'Revenue by month'), form, report);

  async function show() {
    const q = month.value ? `?month=${encodeURIComponent(month.value)}` : '';
    await loadInto(report, () => api(`/seller/revenue${q}`), (r) => {
      if (!month.value) month.value = r.month;
      report.append(h('p', {}, h('strong', {}, `${r.month}: `),
        `${r.total_units} sold, ${r.totals.length
          ? r.totals.map((t) => money(t.revenue_cents, t.currency)).join(', ')
          : money(0)} revenue`));
      if (r.items.length) {
        report.append(h('div', { class: 'table-wrap' }, h('table', {},
          h('caption', { class: 'sr-only' }, `Revenue in ${r.month} per product`),
          h('thead', {}, h('tr', {}, ['Product', 'Units', 'Revenue'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, r.items.map((l) => h('tr', {},
            h('td', {}, l.name), h('td', { class: 'num' }, l.units),
            h('td', { class: 'num' }, money(l.revenue_cents, l.currency))))))));
      }
    });
    if (report.querySelector('[role=alert]') && /Not allowed/.test(report.textContent)) {
      notAllowed(content, 'This page is for sellers.');
    }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); show(); });
  await Promise.all([loadProducts, show()]);
}

