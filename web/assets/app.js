// Entry point of every page: draws the navigation for the signed-in user and
// hands the page (named by the server in <body data-page>) to its module.

import { api, session, logout } from './api.js';
import { h, showCartCount } from './ui.js';

function nav() {
  const s = session();
  const list = document.getElementById('nav');
  const here = location.pathname;
  const link = (href, text) => h('li', {}, h('a', {
    href, 'aria-current': here === href ? 'page' : null,
  }, text));
  const items = [link('/', 'Home'), link('/sales', 'Sales'), link('/products', 'Books')];
  if (s) {
    const cart = link('/cart', 'Cart');
    cart.firstChild.id = 'cart-link';
    cart.firstChild.append(h('span', { id: 'cart-count' }));
    items.push(cart, link('/orders', 'My orders'));
    if (s.user.role === 'seller' || s.user.role === 'admin') items.push(link('/seller', 'Seller'));
    if (s.user.role === 'admin') items.push(link('/admin', 'Admin'), link('/admin/users', 'Users'));
    items.push(h('li', { class: 'who' }, h('span', { class: 'muted' }, s.user.username),
      h('button', {
        type: 'button',
        class: 'link',
        id: 'sign-out',
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          // Forget the tokens locally even if the shop cannot be reached.
          try { await logout(); } catch { /* already forgotten */ }
          location.assign('/');
        },
      }, 'Sign out')));
  } else {
    items.push(link(`/login`, 'Sign in'), link('/register', 'Register'));
  }
  list.replaceChildren(...items);
  // The count is a nicety: a page works without it.
  if (s) api('/cart').then(showCartCount).catch(() => {});
}

const PAGES = {
  home: () => import('./shop.js').then((m) => m.home),
  sales: () => import('./shop.js').then((m) => m.salesList),
  sale: () => import('./shop.js').then((m) => m.salePage),
  products: () => import('./products.js').then((m) => m.catalogPage),
  product: () => import('./products.js').then((m) => m.productPage),
  cart: () => import('./cart.js').then((m) => m.cartPage),
  login: () => import('./account.js').then((m) => m.loginPage),
  register: () => import('./account.js').then((m) => m.registerPage),
  forgot: () => import('./account.js').then((m) => m.forgotPage),
  reset: () => import('./account.js').then((m) => m.resetPage),
  orders: () => import('./orders.js').then((m) => m.ordersPage),
  order: () => import('./orders.js').then((m) => m.orderPage),
  pay: () => import('./pay.js').then((m) => m.payPage),
  seller: () => import('./seller.js').then((m) => m.sellerPage),
  admin: () => import('./admin.js').then((m) => m.adminPage),
  'admin-sale': () => import('./admin.js').then((m) => m.adminSalePage),
  'admin-users': () => import('./admin.js').then((m) => m.adminUsersPage),
};

async function start() {
  nav();
  const content = document.getElementById('content');
  const page = document.body.dataset.page;
  const load = PAGES[page];
  if (!load) {
    content.replaceChildren(h('p', {}, 'There is no such page. ', h('a', { href: '/' }, 'Go to the shop')));
    return;
  }
  const render = await load();
  await render(content);
}

start();
