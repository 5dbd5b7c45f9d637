-- A queue ticket's references are kept by the statements that write them, not
-- by foreign keys.
--
-- In the first seconds of a waiting-room sale, every shopper's first join
-- inserts a ticket, in batches of hundreds. The three foreign keys of
-- queue_ticket fired one check each per ticket, and those checks cost about
-- half of a join batch (EXPLAIN ANALYZE of 100 tickets: 1.45 ms of triggers in
-- 2.84 ms of execution).
--
-- Invariants (checked by the load harness in every snapshot of every run):
--   every ticket's sale_id has its sale_queue row: a ticket is inserted only
--     by a join (`db::queue::join`), which holds that row's lock while it
--     inserts;
--   every ticket's user_id is an account: a join inserts only the users it
--     finds in app_user, by one probe of its key per user in the same
--     statement;
--   every ticket's order_id is an order of the same sale and user: it is set
--     only by the purchase statements, to the order they insert in the same
--     statement;
--   and none of sale_queue, app_user or purchase_order rows is ever deleted
--     (no statement of the engine deletes them).

alter table queue_ticket
    drop constraint queue_ticket_sale_id_fkey,
    drop constraint queue_ticket_user_id_fkey,
    drop constraint queue_ticket_order_id_fkey;
