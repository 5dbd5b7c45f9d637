-- flashsale schema, version 1.
--
-- Every rule that keeps a sale honest lives here as a constraint, so that any
-- number of server processes can share one database: the application checks
-- first (for clear errors), the constraints are the last line of defence.

-- Accounts. Usernames and emails are unique regardless of case.
create table app_user (
    id                bigint generated always as identity primary key,
    username          text not null,
    email             text not null,
    password_hash     text not null,
    role              text not null default 'customer'
                      constraint app_user_role_check check (role in ('customer', 'seller', 'admin')),
    email_verified_at timestamptz,
    disabled_at       timestamptz,
    created_at        timestamptz not null default now()
);
create unique index app_user_username_key on app_user (lower(username));
create unique index app_user_email_key on app_user (lower(email));

-- Refresh tokens are stored as SHA-256 hashes, never in clear. Each one
-- remembers the access token issued beside it so that logout kills both.
create table refresh_token (
    id          uuid primary key,
    user_id     bigint not null references app_user (id) on delete cascade,
    token_hash  bytea not null constraint refresh_token_hash_key unique,
    access_jti  uuid not null,
    expires_at  timestamptz not null,
    revoked_at  timestamptz,
    created_at  timestamptz not null default now()
);
create index refresh_token_access_jti_idx on refresh_token (access_jti);

-- Access tokens that were logged out before they expired. Rows past
-- expires_at are useless and are swept by the server.
create table revoked_token (
    jti         uuid primary key,
    user_id     bigint not null references app_user (id) on delete cascade,
    expires_at  timestamptz not null,
    revoked_at  timestamptz not null default now()
);

-- Products (books). sell_count moves in the same commit as the orders.
create table product (
    id          bigint generated always as identity primary key,
    seller_id   bigint not null references app_user (id),
    name        text not null,
    description text not null default '',
    price_cents bigint not null constraint product_price_check check (price_cents >= 0),
    currency    text not null default 'EUR'
                constraint product_currency_check check (currency ~ '^[A-Z]{3}$'),
    sell_count  bigint not null default 0 constraint product_sell_count_check check (sell_count >= 0),
    created_at  timestamptz not null default now()
);
create index product_newest_idx on product (created_at desc, id desc);
create index product_best_selling_idx on product (sell_count desc, id desc);
create index product_seller_idx on product (seller_id);

-- A flash sale: a window and a stock. The sale row is the one every purchase
-- locks, so it also carries `remaining`.
create table sale (
    id             bigint generated always as identity primary key,
    product_id     bigint not null references product (id),
    starts_at      timestamptz not null,
    ends_at        timestamptz not null,
    stock          bigint not null constraint sale_stock_check check (stock > 0),
    remaining      bigint not null,
    price_cents    bigint not null constraint sale_price_check check (price_cents >= 0),
    per_user_limit integer not null default 1 constraint sale_per_user_limit_check check (per_user_limit >= 1),
    cancelled_at   timestamptz,
    created_by     bigint not null references app_user (id),
    created_at     timestamptz not null default now(),
    constraint sale_remaining_check check (remaining >= 0 and remaining <= stock),
    constraint sale_window_check check (ends_at > starts_at)
);
create index sale_starts_at_idx on sale (starts_at);
create index sale_product_idx on sale (product_id);

-- Order numbers read YYYY-MM-NNNNNN (UTC month of the order, then a counter
-- that never repeats; it grows past six digits rather than wrapping).
create sequence order_number_seq;

create function next_order_number() returns text
language sql volatile as $$
    select to_char(now() at time zone 'utc', 'YYYY-MM') || '-' ||
           case when length(n) < 6 then lpad(n, 6, '0') else n end
    from (select nextval('order_number_seq')::text as n) as seq
$$;

create table purchase_order (
    id               bigint generated always as identity primary key,
    number           text not null default next_order_number(),
    sale_id          bigint not null references sale (id),
    product_id       bigint not null references product (id),
    user_id          bigint not null references app_user (id),
    quantity         integer not null constraint purchase_order_quantity_check check (quantity >= 1),
    unit_price_cents bigint not null,
    total_cents      bigint not null,
    status           text not null default 'confirmed'
                     constraint purchase_order_status_check check (status in ('confirmed', 'cancelled')),
    created_at       timestamptz not null default now(),
    constraint purchase_order_number_key unique (number),
    -- One order per shopper per sale. The purchase path checks this under the
    -- sale lock; the constraint makes it impossible even for a buggy writer.
    constraint purchase_order_sale_id_user_id_key unique (sale_id, user_id)
);
-- "My orders", newest first.
create index purchase_order_user_idx on purchase_order (user_id, created_at desc);
-- Orders of a product by day, and (joined with product.seller_id) revenue of
-- a seller by month.
create index purchase_order_product_day_idx on purchase_order (product_id, created_at);
