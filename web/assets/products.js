// The catalog: the list of books (searched through `?q=`, kept in the page's
// address so a search can be shared and reloaded) and one book's page with
// its catalog stock and "Add to cart".

import { api, session } from './api.js';
import {
  h, money, field, loadInto, setTitle, signInHref, errorBox, showCartCount, stockText,
} from './ui.js';

const PAGE = 20;

/** A whole number in 1..100 from a quantity input, or null. */
export function quantityOf(input) {
  const text = input.value.trim();
  if (!/^\d+$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 100 ? n : null;
}

export function quantityInput(id, value, label) {
  return h('input', {
    id, type: 'number', inputmode: 'numeric', min: 1, max: 100, step: 1, value, required: true,
    class: 'qty', 'aria-label': label,
  });
}

function productCard(p) {
  return h('li', { class: 'card', 'data-product': p.id },
    h('h3', {}, h('a', { href: `/products/${p.id}` }, p.name)),
    h('p', { class: 'row' }, h('span', { class: 'price' }, money(p.price_cents, p.currency)),
      h('span', { class: 'muted small' }, stockText(p))),
    p.description ? h('p', { class: 'muted small' },
      p.description.length > 140 ? `${p.description.slice(0, 140)}…` : p.description) : null);
}

export async function catalogPage(content) {
  const params = new URLSearchParams(location.search);
  const q = (params.get('q') || '').trim();
  const offset = Math.max(0, Number.parseInt(params.get('offset') || '0', 10) || 0);
  // The header's box shows the query it found.
  const header = document.getElementById('site-search');
  if (header) header.value = q;
  if (q) setTitle(`Books matching “${q}”`);

  const input = h('input', {
    id: 'catalog-search', name: 'q', type: 'search', maxlength: 200, value: q, autocomplete: 'off',
  });
  const form = h('form', { class: 'form inline-form', role: 'search', action: '/products', method: 'get' },
    field('Search the books', input, 'Title, words of the description, or the seller’s name.'),
    h('button', { type: 'submit' }, 'Search'));
  const list = h('div', { id: 'results', 'aria-live': 'polite' });
  content.replaceChildren(form, list);

  const query = new URLSearchParams({ limit: String(PAGE + 1), offset: String(offset) });
  if (q) query.set('q', q);
  await loadInto(list, () => api(`/products?${query}`, { auth: false }), ({ items }) => {
    const more = items.length > PAGE;
    const shown = items.slice(0, PAGE);
    let said = shown.length ? '' : 'No books yet.';
    if (q) {
      said = shown.length
        ? `Books matching “${q}”, best match first: ${offset + 1} to ${offset + shown.length}.`
        : `No book matches “${q}”. Try fewer or other words.`;
    }
    const count = h('p', { id: 'result-count' }, said);
    const link = (off, text) => {
      const p = new URLSearchParams();
      if (q) p.set('q', q);
      if (off) p.set('offset', String(off));
      const s = p.toString();
      return h('a', { href: `/products${s ? `?${s}` : ''}` }, text);
    };
    list.append(count,
      shown.length ? h('ul', { class: 'cards', id: 'products' }, shown.map(productCard)) : null,
      offset || more ? h('nav', { class: 'pager', 'aria-label': 'Pages of results' },
        offset ? link(Math.max(0, offset - PAGE), 'Previous') : null,
        more ? link(offset + PAGE, 'Next') : null) : null);
  });
}

export async function productPage(content) {
  const id = Number(location.pathname.split('/')[2]);
  let product;
  await loadInto(content, () => api(`/products/${id}`, { auth: false }), (p) => {
    product = p;
  });
  if (!product) return;
  const p = product;
  setTitle(p.name);

  const qty = quantityInput('quantity', 1, null);
  const add = h('button', { type: 'submit', id: 'add-to-cart', class: 'buy' }, 'Add to cart');
  const result = h('div', { id: 'result', class: 'result', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const forSale = p.stock > 0;
  const form = h('form', { class: 'form compact', novalidate: true, 'aria-label': 'Add to cart' },
    field('Quantity', qty, forSale ? `1 to ${Math.min(100, p.stock)}` : null), add, result);
  if (!forSale) {
    qty.disabled = true;
    add.disabled = true;
  }

  content.replaceChildren(h('div', { class: 'sale' },
    h('section', { class: 'sale-info' },
      h('p', { class: 'price big', id: 'price' }, money(p.price_cents, p.currency)),
      h('p', {}, p.description || ''),
      p.sell_count ? h('p', { class: 'muted small' }, `${p.sell_count} sold`) : null),
    h('section', { class: 'sale-box', 'aria-label': 'Buy' },
      h('p', { id: 'stock', class: 'stock' }, stockText(p)),
      forSale ? null : h('p', { class: 'muted' }, 'This book is not sold from the catalog. ',
        h('a', { href: '/sales' }, 'See the sales')),
      form)));

  function show(kind, ...parts) {
    result.className = `result result-${kind}`;
    result.replaceChildren(h('p', {}, ...parts));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!session()) {
      location.assign(signInHref());
      return;
    }
    const n = quantityOf(qty);
    if (n === null) {
      show('bad', 'Enter a whole number of copies from 1 to 100.');
      qty.focus();
      return;
    }
    add.disabled = true;
    show('info', 'Adding…');
    try {
      // "Add" adds to what the cart already holds of this book.
      const cart = await api('/cart');
      const line = cart.items.find((i) => i.product.id === p.id);
      const total = (line ? line.quantity : 0) + n;
      if (total > 100) {
        show('bad', `Your cart already holds ${line.quantity}; a cart holds at most 100 copies of a book. `,
          h('a', { href: '/cart' }, 'See the cart'));
        return;
      }
      const after = await api(`/cart/items/${p.id}`, { method: 'PUT', body: { quantity: total } });
      showCartCount(after);
      const now = after.items.find((i) => i.product.id === p.id);
      show(now && !now.available ? 'warn' : 'ok', h('strong', {}, 'Added. '),
        `Your cart holds ${total} ${total === 1 ? 'copy' : 'copies'} of this book`,
        now && !now.available ? `, but only ${now.product.stock} ${now.product.stock === 1 ? 'is' : 'are'} in stock` : '',
        '. ', h('a', { href: '/cart', id: 'go-to-cart' }, 'See the cart'));
    } catch (err) {
      result.className = 'result';
      result.replaceChildren(errorBox(err, () => form.requestSubmit()));
    } finally {
      add.disabled = false;
    }
  });
}
