// The built-in test provider's hosted page, `/pay/{payment_id}`: a simulated
// card processor's checkout. It talks only to the provider's own API (no shop
// session: the payment id is the capability, as with Stripe Checkout) and
// sends the shopper back to the shop's order page once the card is decided.
// The shop itself hears the outcome by webhook, a moment later.

import { api } from './api.js';
import { h, money, errorBox, field, setTitle } from './ui.js';

const TEST_CARDS = [
  ['4242 4242 4242 4242', 'succeeds'],
  ['4000 0000 0000 0002', 'is declined'],
  ['4000 0000 0000 9995', 'is declined (insufficient funds)'],
];

/** Why a card was declined, from the test card it was. */
function declineReason(last4) {
  return last4 === '9995' ? 'insufficient funds' : 'the card was declined';
}

function backLink(charge, text) {
  return h('a', { href: `/orders/${charge.order_id}`, id: 'back-to-shop', class: 'button-link' }, text);
}

/** What the page says about a charge that is decided. */
function decided(charge) {
  switch (charge.status) {
    case 'succeeded':
      return h('div', { class: 'alert alert-ok', role: 'status' },
        h('p', {}, h('strong', {}, 'Payment accepted. '),
          `${money(charge.amount_cents, charge.currency)} charged to the card ending ${charge.card_last4 || '····'}. `,
          'The shop is told in a moment.'),
        h('p', {}, backLink(charge, 'Back to the shop: your order')));
    case 'failed':
      return h('div', { class: 'alert alert-error', role: 'alert' },
        h('p', {}, h('strong', {}, 'Payment declined: '), `${declineReason(charge.card_last4)}. `,
          'Nothing was charged, and the shop releases the unit.'),
        h('p', {}, backLink(charge, 'Back to the shop: your order')));
    case 'refunded':
      return h('div', { class: 'alert alert-ok', role: 'status' },
        h('p', {}, h('strong', {}, 'Refunded. '), 'This payment was given back to the card.'),
        h('p', {}, backLink(charge, 'Back to the shop: your order')));
    default:
      return h('p', {}, `This payment is ${charge.status}. `, backLink(charge, 'Back to the shop'));
  }
}

export async function payPage(content) {
  const paymentId = location.pathname.split('/')[2];
  setTitle('Test payment processor');
  const banner = h('div', { class: 'test-banner', role: 'note' },
    h('p', {}, h('strong', {}, 'Simulated test processor. '),
      'This page stands in for a card processor’s hosted checkout. No real card is charged and no money moves.'));
  const body = h('div');
  content.replaceChildren(banner, body);

  let charge;
  const load = async () => {
    body.replaceChildren(h('p', { class: 'muted', role: 'status' }, 'Loading…'));
    try {
      charge = await api(`/test-provider/payments/${paymentId}`, { auth: false });
    } catch (err) {
      body.replaceChildren(errorBox(err, load));
      return;
    }
    draw();
  };

  function draw() {
    const amount = money(charge.amount_cents, charge.currency);
    const facts = h('dl', { class: 'facts', id: 'charge' },
      h('dt', {}, 'Amount'), h('dd', { id: 'charge-amount', class: 'price big' }, amount),
      h('dt', {}, 'Currency'), h('dd', { id: 'charge-currency' }, charge.currency),
      h('dt', {}, 'Order'), h('dd', { id: 'charge-order' }, `#${charge.order_id}`),
      h('dt', {}, 'Payment'), h('dd', { class: 'small' }, charge.payment_id));
    const outcome = h('div', { id: 'pay-result', 'aria-live': 'polite' });
    if (charge.status !== 'open') {
      outcome.replaceChildren(decided(charge));
      body.replaceChildren(h('section', { class: 'sale-box' }, facts), outcome);
      outcome.querySelector('a')?.focus();
      return;
    }
    const number = h('input', {
      id: 'card-number', name: 'cardnumber', inputmode: 'numeric', autocomplete: 'cc-number',
      required: true, maxlength: 23, placeholder: '4242 4242 4242 4242',
    });
    const submit = h('button', { type: 'submit', id: 'pay-card' }, `Pay ${amount}`);
    const cards = h('ul', { class: 'small', id: 'test-cards' }, TEST_CARDS.map(([n, what]) => h('li', {},
      h('code', {}, n), ` ${what}`)));
    const form = h('form', { class: 'form narrow', novalidate: true },
      field('Card number', number, 'Test cards only: any other number is refused.'), cards, submit, outcome,
      h('p', { class: 'small' }, h('a', { href: `/orders/${charge.order_id}` }, 'Back to the shop without paying')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!number.value.trim()) {
        outcome.replaceChildren(h('p', { class: 'alert alert-error', role: 'alert' }, 'Enter a card number.'));
        return;
      }
      submit.disabled = true;
      outcome.replaceChildren(h('p', { class: 'muted', role: 'status' }, 'Charging the card…'));
      try {
        charge = await api(`/test-provider/payments/${paymentId}/card`, {
          method: 'POST', body: { number: number.value }, auth: false,
        });
        draw();
      } catch (err) {
        if (err.code === 'payment_not_open') {
          // Decided meanwhile (another tab, or the hold's end): show how.
          await load();
          return;
        }
        outcome.replaceChildren(err.code === 'validation_failed'
          ? h('p', { class: 'alert alert-error', role: 'alert' },
            'That is not a test card. Use one of the numbers above.')
          : errorBox(err, () => form.requestSubmit()));
        submit.disabled = false;
      }
    });
    body.replaceChildren(h('div', { class: 'sale' }, h('section', { class: 'sale-info' }, facts),
      h('section', { class: 'sale-box', 'aria-label': 'Card' }, form)));
    number.focus();
  }

  await load();
}
