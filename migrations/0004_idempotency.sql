-- Idempotency keys: the first answer to (user, key) is kept for 24 hours,
-- with a fingerprint of the request it answered. A retry with the same key
-- gets the same answer; the same key on another request is refused; a retry
-- while the first is still being served waits for it. A row whose `status`
-- is null is in progress.
create table idempotency_key (
    user_id     bigint not null references app_user (id) on delete cascade,
    key         text not null,
    fingerprint bytea not null,
    status      smallint,
    body        jsonb,
    created_at  timestamptz not null default now(),
    primary key (user_id, key)
);
create index idempotency_key_created_idx on idempotency_key (created_at);
