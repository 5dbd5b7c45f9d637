// The shopper's orders: the list, and one order's page.

import { api, session } from './api.js';
import { h, money, when, loadInto, signInHref } from './ui.js';

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
