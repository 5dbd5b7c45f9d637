-- The hot row and its orders, for `stress ceiling`: one sale whose stock does
-- not run out during a measurement, and an order table with the same
-- one-order-per-buyer key as the real schema. Made again at the start of
-- every ceiling run, in a database of its own.
DROP TABLE IF EXISTS ceiling_order, ceiling_sale;

CREATE TABLE ceiling_sale (
    id         int    PRIMARY KEY,
    remaining  bigint NOT NULL,
    sell_count bigint NOT NULL DEFAULT 0
);

CREATE TABLE ceiling_order (
    id         bigserial   PRIMARY KEY,
    sale_id    int         NOT NULL,
    user_id    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sale_id, user_id)
);

INSERT INTO ceiling_sale (id, remaining) VALUES (1, 1000000000);
