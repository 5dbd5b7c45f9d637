-- The book shop beyond the sale: catalog stock, a cart per shopper, orders
-- of several lines from the catalog, and full-text search.
--
-- Invariants, at every instant, beside those of 0003 and 0005:
--   for each product, stock + sum(units of live catalog orders of it) is what
--   its seller put in (stock moves only with a seller's change, a checkout,
--   a release or a late payment taking its units again);
--   for each product, sell_count = sum(units of live orders of it), sale
--   orders and catalog lines together.
-- Kept by: every writer moves `stock`, `sell_count` and the order's status
-- in one transaction, under the row locks of the order's products, taken in
-- product id order (a checkout, a release, a late payment). Lock order for a
-- catalog order: its products in id order, then the order, then its payment.
-- A sale order keeps the order of 0003 (sale, then product); a catalog order
-- never locks a sale, and a sale order locks one product, so the two orders
-- cannot wait on each other in a cycle.

-- Units for regular (catalog) orders; 0 = sold only in flash sales.
alter table product
    add column stock bigint not null default 0 constraint product_stock_check check (stock >= 0);

-- Every order has a currency (a sale order's is its product's; a catalog
-- order's is the one currency of all its lines). A catalog order has no sale
-- and no one product: its lines say what it holds, and `quantity` is the sum
-- of its lines' units.
alter table purchase_order add column currency text;
update purchase_order o set currency = p.currency from product p where p.id = o.product_id;
alter table purchase_order
    alter column currency set not null,
    alter column sale_id drop not null,
    alter column product_id drop not null,
    alter column unit_price_cents drop not null,
    add constraint purchase_order_kind_check check (
        (sale_id is not null and product_id is not null and unit_price_cents is not null)
        or (sale_id is null and product_id is null and unit_price_cents is null));

-- A catalog order's lines, one per product, with the price paid.
create table order_line (
    order_id         bigint not null references purchase_order (id),
    product_id       bigint not null references product (id),
    quantity         integer not null constraint order_line_quantity_check check (quantity between 1 and 100),
    unit_price_cents bigint not null,
    total_cents      bigint not null,
    primary key (order_id, product_id)
);
-- Lines of a product, for its seller's reports and the invariants.
create index order_line_product_idx on order_line (product_id, order_id);

-- An order's lines as the API shows them: a sale order's one line from its
-- own columns, a catalog order's from order_line.
create function order_lines(order_id bigint, sale_id bigint, product_id bigint, quantity integer,
                            unit_price_cents bigint, total_cents bigint)
returns jsonb language sql stable as $$
    select case when sale_id is not null then
               jsonb_build_array(jsonb_build_object(
                   'product_id', product_id, 'quantity', quantity,
                   'unit_price_cents', unit_price_cents, 'total_cents', total_cents))
           else coalesce((select jsonb_agg(jsonb_build_object(
                                  'product_id', l.product_id, 'quantity', l.quantity,
                                  'unit_price_cents', l.unit_price_cents,
                                  'total_cents', l.total_cents) order by l.product_id)
                            from order_line l where l.order_id = order_lines.order_id),
                         '[]'::jsonb)
           end
$$;

-- Every unit an order holds or held, of both kinds, with its order's status
-- and time: what reports, digests and best sellers count.
create view order_item as
    select o.id as order_id, o.product_id, o.quantity, o.unit_price_cents, o.total_cents,
           o.status, o.created_at, o.user_id, o.currency
      from purchase_order o
     where o.sale_id is not null
    union all
    select l.order_id, l.product_id, l.quantity, l.unit_price_cents, l.total_cents,
           o.status, o.created_at, o.user_id, o.currency
      from order_line l join purchase_order o on o.id = l.order_id;

-- A shopper's cart: kept in the database, so it survives restarts, other
-- instances and new logins. A line whose product runs short stays, shown as
-- unavailable.
create table cart_item (
    user_id    bigint not null references app_user (id) on delete cascade,
    product_id bigint not null references product (id),
    quantity   integer not null constraint cart_item_quantity_check check (quantity between 1 and 100),
    added_at   timestamptz not null default now(),
    primary key (user_id, product_id)
);

-- Full-text search over name, description and the seller's name: a
-- document kept beside the row (weights: name A, seller B, description C),
-- refreshed on every write that changes it, with a GIN index.
alter table product add column search tsvector;

create function product_search_doc(name text, description text, seller_id bigint)
returns tsvector language sql stable as $$
    select setweight(to_tsvector('english', name), 'A')
        || setweight(to_tsvector('simple', coalesce((select username from app_user where id = seller_id), '')), 'B')
        || setweight(to_tsvector('english', description), 'C')
$$;

create function product_search_refresh() returns trigger language plpgsql as $$
begin
    new.search := product_search_doc(new.name, new.description, new.seller_id);
    return new;
end
$$;

create trigger product_search_refresh
    before insert or update of name, description, seller_id on product
    for each row execute function product_search_refresh();

update product set search = product_search_doc(name, description, seller_id);
alter table product alter column search set not null;
create index product_search_idx on product using gin (search);
