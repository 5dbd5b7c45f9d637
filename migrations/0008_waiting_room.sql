-- Fair admission: the waiting room.
--
-- A sale with `waiting_room` sells only to shoppers it admitted from its
-- queue. Everyone who joins before the start (the pre-queue) is given a
-- uniformly random place at the start, drawn once by the database
-- (`gen_random_uuid()`, from the server's strong random source: no client can
-- predict or influence it); later joiners are placed behind, in the order they
-- are placed. From the start, places are admitted at `admit_per_sec`; an
-- admitted shopper has `admission_secs` to buy, once.
--
-- Invariants, for each waiting-room sale:
--   the places given are exactly 1..last_position, each once (the unique key
--     below, and every place is taken from `last_position` under the
--     `sale_queue` row's lock);
--   no ticket has a place before the draw, and after it every ticket has one
--     (the draw and every join take that lock, and a join after the draw
--     takes its place in the same statement that inserts it);
--   admitted_through <= last_position, and a ticket has `admitted_until` if
--     and only if its place is <= admitted_through;
--   every order of the sale is the order of an admitted ticket, made before
--     its `admitted_until` (checked by the purchase under the sale's lock, in
--     the same transaction that marks the ticket used: one ticket buys once).
-- Lock order: sale, then sale_queue, then queue_ticket. A purchase takes the
-- sale's lock and then marks tickets; admission and joins take sale_queue's
-- lock and never the sale's.

alter table sale
    add column waiting_room   boolean not null default false,
    add column admit_per_sec  integer not null default 100
        constraint sale_admit_per_sec_check check (admit_per_sec between 1 and 100000),
    add column admission_secs integer not null default 120
        constraint sale_admission_secs_check check (admission_secs between 10 and 3600),
    -- Only shoppers with a verified email address may buy in this sale.
    add column verified_only  boolean not null default false;

-- A waiting-room sale's line, made by its first join.
create table sale_queue (
    sale_id          bigint primary key references sale (id),
    -- When the pre-queue's places were drawn; null before the start.
    drawn_at         timestamptz,
    -- Places given so far: 1..last_position.
    last_position    integer not null default 0 check (last_position >= 0),
    -- The last place admitted; 0 before the first admission.
    admitted_through integer not null default 0,
    -- Admission is credited at admit_per_sec up to this instant.
    credited_until   timestamptz,
    constraint sale_queue_admitted_check check (admitted_through between 0 and last_position)
);

create table queue_ticket (
    sale_id        bigint not null references sale_queue (sale_id),
    user_id        bigint not null references app_user (id),
    -- Arrival order across the whole table (the reports' join order).
    arrival        bigint generated always as identity,
    joined_at      timestamptz not null default clock_timestamp(),
    -- Null in the pre-queue until the draw.
    position       integer check (position >= 1),
    admitted_until timestamptz,
    used_at        timestamptz,
    order_id       bigint references purchase_order (id),
    primary key (sale_id, user_id),
    constraint queue_ticket_position_key unique (sale_id, position),
    constraint queue_ticket_used_check check (used_at is null or admitted_until is not null)
);
