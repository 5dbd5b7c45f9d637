// Account pages: sign in, register, forgot password and choosing a new one.

import { api, login, register } from './api.js';
import { h, errorBox, field } from './ui.js';

/**
 * Where to go after signing in: `next` if it is a page of this shop, else
 * `/`. Browsers read a backslash as a slash and drop tabs and newlines, so
 * `/\evil.example` or `/<tab>/evil.example` would leave the site: such
 * characters are refused outright, and what is left must resolve to this
 * origin.
 */
export function sameSitePath(next) {
  if (!next || !next.startsWith('/') || /[\\\u0000-\u001f\u007f]/.test(next)) return '/';
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
  } catch {
    return '/';
  }
}

export async function loginPage(content) {
  const target = sameSitePath(new URLSearchParams(location.search).get('next'));
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
