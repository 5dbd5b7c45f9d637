-- Holds and the order lifecycle.
--
-- Winning a unit of a sale with a hold makes a `pending_payment` order that
-- holds the unit until `expires_at`; it is sold when paid and goes back to the
-- stock when the payment fails, the hold runs out, or an admin cancels. A sale
-- without a hold (`hold_secs = 0`) confirms its orders at once, as before.
--
-- Invariants, at every instant, for each sale and product:
--   remaining + sum(quantity of live orders) = stock
--   sell_count = sum(quantity of live orders)
-- where an order is live while it holds its unit: pending_payment, paid or
-- confirmed. Every writer moves the counters in the same transaction as the
-- status, under the sale's row lock (sale, then product, then orders).

alter table sale
    add column hold_secs integer not null default 0
        constraint sale_hold_secs_check check (hold_secs between 0 and 3600);

alter table purchase_order
    drop constraint purchase_order_status_check,
    add constraint purchase_order_status_check check (status in (
        'pending_payment', 'paid', 'confirmed',
        'payment_failed', 'expired', 'cancelled', 'refunded')),
    add column expires_at  timestamptz,
    add column paid_at     timestamptz,
    -- When the order stopped holding its unit (failed, expired, cancelled,
    -- refunded).
    add column released_at timestamptz,
    add constraint purchase_order_hold_check
        check (status <> 'pending_payment' or expires_at is not null);

-- One live order per shopper per sale: a shopper whose hold failed or expired
-- may buy again while stock lasts. The purchase path checks this under the
-- sale lock; the index makes it impossible even for a buggy writer.
alter table purchase_order drop constraint purchase_order_sale_id_user_id_key;
create unique index purchase_order_live_key on purchase_order (sale_id, user_id)
    where status in ('pending_payment', 'paid', 'confirmed');

-- The expiry sweeper's search: overdue holds, soonest first.
create index purchase_order_hold_expiry_idx on purchase_order (expires_at)
    where status = 'pending_payment';

-- Leases: work that one instance at a time does (the expiry sweeper). The
-- holder renews its lease on every round; when it stops, the lease runs out
-- and another instance takes over. No session state, so it works through a
-- transaction-pooling proxy.
create table lease (
    name   text primary key,
    holder uuid not null,
    until  timestamptz not null
);

-- The buyer hears of a hold that ran out and of an admin's cancel.
alter table outbox
    drop constraint outbox_kind_check,
    add constraint outbox_kind_check check (kind in (
        'order_confirmation', 'hold_expired', 'order_cancelled',
        'verify_email', 'password_reset',
        'seller_daily_digest', 'seller_monthly_report', 'new_products'));
