-- Payments: what a shopper paid, or tried to pay, for an order, as the shop
-- learns it from its provider's signed webhooks.
--
-- Invariants, at every instant:
--   every paid order has exactly one succeeded payment;
--   every payment that succeeded (status succeeded, refunding or refunded)
--   belongs to exactly one paid or refunded order.
-- Kept by: at most one payment that has not failed per order (the unique
-- index below); and every writer that turns a payment `succeeded` turns its
-- order `paid` or `refunded` in the same transaction, and one that refunds a
-- paid order turns its payment `refunding` in the same statement. Lock order:
-- sale, product, order, payment.
create table payment (
    id            uuid primary key,
    order_id      bigint not null references purchase_order (id),
    provider      text not null,
    -- The provider's own id of the charge.
    provider_ref  text not null,
    status        text not null default 'open'
                  constraint payment_status_check check (status in (
                      'open', 'succeeded', 'failed', 'refunding', 'refunded')),
    amount_cents  bigint not null constraint payment_amount_check check (amount_cents >= 0),
    currency      text not null,
    -- Where the shopper pays (the provider's hosted page).
    redirect_url  text not null,
    created_at    timestamptz not null default now(),
    succeeded_at  timestamptz,
    failed_at     timestamptz,
    refunded_at   timestamptz,
    -- A refund in flight: the refund worker that claimed it holds it until
    -- then; after that another may try again (refunds are idempotent at the
    -- provider, by payment).
    refund_claimed_until timestamptz,
    refund_attempts integer not null default 0,
    refund_error  text
);
create unique index payment_order_key on payment (order_id) where status <> 'failed';
create index payment_refunding_idx on payment (id) where status = 'refunding';
-- The sweeper's search for holds whose payment failed but whose release did
-- not happen (the process stopped in between): recent failures only, since a
-- hold outlives its payment by at most its own length (one hour at most).
create index payment_failed_idx on payment (failed_at) where status = 'failed';

-- Webhook events already handled, by the provider's event id: a replay is
-- answered and changes nothing.
create table payment_event (
    id          text primary key,
    payment_id  uuid not null,
    type        text not null,
    received_at timestamptz not null default now()
);

-- The built-in test provider's own books: a simulated card processor that
-- keeps its charges apart from the shop's payments, and tells the shop what
-- happened only through signed webhooks.
create table test_provider_charge (
    payment_id   uuid primary key,
    order_id     bigint not null,
    amount_cents bigint not null,
    currency     text not null,
    status       text not null default 'open'
                 constraint test_provider_charge_status_check check (status in (
                     'open', 'succeeded', 'failed', 'refunded')),
    card_last4   text,
    created_at   timestamptz not null default now(),
    decided_at   timestamptz,
    refunded_at  timestamptz
);

-- The buyer hears of a payment received, failed or refunded; webhooks from
-- the provider ride in the outbox too (at least once, retried).
alter table outbox
    drop constraint outbox_kind_check,
    add constraint outbox_kind_check check (kind in (
        'order_confirmation', 'hold_expired', 'order_cancelled',
        'payment_received', 'payment_failed', 'order_refunded',
        'verify_email', 'password_reset',
        'seller_daily_digest', 'seller_monthly_report', 'new_products',
        'payment_webhook'));

-- The webhook senders' search: due webhooks only, however many emails wait
-- (with email off, every confirmation waits in the outbox).
create index outbox_webhook_due_idx on outbox (next_attempt_at, id)
    where status = 'pending' and kind = 'payment_webhook';
