-- The purchase batch's write, as a function: the orders a batch accepted, the
-- sale's stock and the product's sell count moved by what was really
-- inserted, a confirmation email for each confirmed order, and each order's
-- queue ticket marked used. Called by `purchase::combiner::batch`, under the
-- sale row's lock (taken by the batch's first statement), in the same
-- transaction that commits it.
--
-- Why a function: PL/pgSQL keeps the plan of its statement for the life of
-- the server session. Behind a transaction-mode pooler the engine cannot keep
-- prepared statements (DATABASE_POOLER=transaction), so written inline this
-- statement was planned again in every batch, under the lock: about 0.7 ms of
-- a 50-order batch's 4 ms. The pooler's server connections live long, and
-- the plan is kept with them. The plan is generic (the same for every call):
-- every look-up in it is by key, whatever the parameters.
--
-- Invariants (as when the statement was inline):
--   an order is inserted at most once per buyer and sale among the live
--     statuses: ON CONFLICT on purchase_order_live_key does nothing, and the
--     caller answers that buyer `already_purchased`;
--   sale.remaining and product.sell_count move by the sum of the quantities
--     actually inserted, in the same statement as the orders;
--   a confirmed order (no hold) gets its confirmation email in the outbox in
--     the same statement; an order on hold gets it when paid;
--   with a waiting room, the buyer's ticket is used by this order, once:
--     used_at is the clock when the order was made (after the lock's statement
--     saw the ticket admitted) and order_id the order.
-- Each row returned is an inserted order, with the sale's remaining stock
-- after the whole batch.

create function insert_sale_orders(
    p_sale bigint, p_product bigint, p_price bigint, p_users bigint[],
    p_quantities integer[], p_hold_secs integer, p_tickets boolean)
returns table (id bigint, number text, sale_id bigint, product_id bigint, user_id bigint,
               quantity integer, unit_price_cents bigint, total_cents bigint, currency text,
               status text, created_at timestamptz, expires_at timestamptz,
               paid_at timestamptz, released_at timestamptz, remaining bigint)
language plpgsql
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
    return query
    with ins as (
             insert into purchase_order (sale_id, product_id, user_id, quantity,
                                         unit_price_cents, total_cents, currency, status,
                                         expires_at)
             select p_sale, p_product, b.user_id, b.quantity, p_price, b.quantity * p_price,
                    (select p.currency from product p where p.id = p_product),
                    case when p_hold_secs > 0 then 'pending_payment' else 'confirmed' end,
                    case when p_hold_secs > 0 then now() + make_interval(secs => p_hold_secs) end
               from unnest(p_users, p_quantities) with ordinality as b(user_id, quantity, n)
              order by b.n
             on conflict (sale_id, user_id)
                where status in ('pending_payment', 'paid', 'confirmed') do nothing
             returning *),
         s as (update sale set remaining = remaining - (select coalesce(sum(i.quantity), 0) from ins i)
                where sale.id = p_sale
                returning sale.remaining),
         p as (update product
                  set sell_count = sell_count + (select coalesce(sum(i.quantity), 0) from ins i)
                where product.id = p_product),
         m as (insert into outbox (kind, user_id, order_id)
               select 'order_confirmation', i.user_id, i.id from ins i where i.status = 'confirmed'),
         t as (update queue_ticket q set used_at = clock_timestamp(), order_id = i.id
                 from ins i
                where p_tickets and q.sale_id = p_sale and q.user_id = i.user_id)
    select i.id, i.number, i.sale_id, i.product_id, i.user_id, i.quantity, i.unit_price_cents,
           i.total_cents, i.currency, i.status, i.created_at, i.expires_at, i.paid_at,
           i.released_at, s.remaining
      from ins i, s;
end
$$;
