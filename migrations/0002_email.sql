-- Email: the transactional outbox, single-use tokens sent by email,
-- announcement opt-out, and the record of scheduled job runs.

-- Customers receive the daily announcement of new products unless they opt
-- out through the link in it; the link carries this token, not the user id.
alter table app_user
    add column announcements     boolean not null default true,
    add column unsubscribe_token uuid not null default gen_random_uuid();
create unique index app_user_unsubscribe_token_key on app_user (unsubscribe_token);

-- Tokens mailed for email verification and password reset, stored as SHA-256
-- hashes. Each is used once (used_at) and expires.
create table email_token (
    token_hash bytea primary key,
    user_id    bigint not null references app_user (id),
    purpose    text not null
               constraint email_token_purpose_check check (purpose in ('verify_email', 'password_reset')),
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null default now()
);
create index email_token_user_idx on email_token (user_id, purpose);

-- One row per email, written in the same transaction as the event that
-- causes it. Workers claim due rows with FOR UPDATE SKIP LOCKED; a claim
-- pushes next_attempt_at ahead by a lease, so a worker that dies between
-- claim and send leaves the row to be claimed again when the lease ends
-- (at-least-once delivery). Order confirmations carry only the order id and
-- are rendered at send time; scheduled emails carry their content in payload.
--
-- No foreign keys: an order confirmation is written inside the purchase's
-- locked transaction, where every check costs lock time, and users and orders
-- are never deleted. A row whose referent is missing is parked as dead.
create table outbox (
    id              bigint generated always as identity primary key,
    kind            text not null
                    constraint outbox_kind_check check (kind in (
                        'order_confirmation', 'verify_email', 'password_reset',
                        'seller_daily_digest', 'seller_monthly_report', 'new_products')),
    user_id         bigint not null,
    order_id        bigint,
    payload         jsonb,
    status          text not null default 'pending'
                    constraint outbox_status_check check (status in ('pending', 'sent', 'dead')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now(),
    sent_at         timestamptz
);
create index outbox_due_idx on outbox (next_attempt_at, id) where status = 'pending';
-- Dead rows are few and looked at by admins; sent rows are swept by age.
-- Neither index is touched when a purchase writes its (pending) row.
create index outbox_dead_idx on outbox (id) where status = 'dead';
create index outbox_sent_idx on outbox (sent_at) where status = 'sent';

-- A scheduled job runs at most once per period, across every instance and
-- restart: the run's row is inserted in the same transaction that queues its
-- emails, and the primary key refuses a second one.
create table job_run (
    job     text not null,
    period  text not null,
    trigger text not null constraint job_run_trigger_check check (trigger in ('schedule', 'admin')),
    -- The end of the time window the run covered.
    cutoff  timestamptz not null,
    emails  integer not null,
    ran_at  timestamptz not null default now(),
    primary key (job, period)
);
