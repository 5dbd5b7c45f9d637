-- batch64: 64 purchases per transaction, the way the combined engine serves
-- a batch. One lock of the sale row, one INSERT for all 64 orders, and one
-- UPDATE that moves the counters by the number of orders inserted. Each
-- transaction's buyers are the 64 ids after `first`, which is unique per
-- strategy, client and transaction (see per_purchase_txn.sql).
\set seq :seq + 1
\set first :strategy * 1000000000000000 + :client_id * 10000000000 + :seq * 64
BEGIN;
SELECT remaining FROM ceiling_sale WHERE id = 1 FOR UPDATE;
WITH added AS (
    INSERT INTO ceiling_order (sale_id, user_id)
    SELECT 1, :first + g FROM generate_series(1, 64) AS g
    ON CONFLICT DO NOTHING
    RETURNING 1
)
UPDATE ceiling_sale
   SET remaining = remaining - (SELECT count(*) FROM added),
       sell_count = sell_count + (SELECT count(*) FROM added)
 WHERE id = 1;
COMMIT;
