-- per_purchase_txn: one purchase per interactive transaction. The sale row is
-- locked first, then the order is added and the counters moved, each its own
-- round trip, and the lock is held until COMMIT comes back.
--
-- pgbench keeps a client's variables from one transaction to the next: `seq`
-- (started at 0 with -D) counts this client's purchases, and with `strategy`
-- (-D) and the built-in `client_id` it gives every buyer an id of their own.
\set seq :seq + 1
\set buyer :strategy * 1000000000000000 + :client_id * 10000000000 + :seq
BEGIN;
SELECT remaining FROM ceiling_sale WHERE id = 1 FOR UPDATE;
INSERT INTO ceiling_order (sale_id, user_id) VALUES (1, :buyer) ON CONFLICT DO NOTHING;
UPDATE ceiling_sale SET remaining = remaining - 1, sell_count = sell_count + 1 WHERE id = 1;
COMMIT;
