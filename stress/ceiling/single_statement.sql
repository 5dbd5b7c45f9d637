-- single_statement: one purchase per transaction, in one statement and one
-- round trip. The UPDATE takes the row lock and, while stock lasts, hands
-- the sale's id to the INSERT of the order. Buyer ids as in
-- per_purchase_txn.sql.
\set seq :seq + 1
\set buyer :strategy * 1000000000000000 + :client_id * 10000000000 + :seq
WITH sold AS (
    UPDATE ceiling_sale
       SET remaining = remaining - 1, sell_count = sell_count + 1
     WHERE id = 1 AND remaining > 0
    RETURNING id
)
INSERT INTO ceiling_order (sale_id, user_id)
SELECT id, :buyer FROM sold
ON CONFLICT DO NOTHING;
