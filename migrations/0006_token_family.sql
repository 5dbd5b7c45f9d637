-- Refresh-token families. Every refresh token descends from one sign-in
-- (register or login): rotation hands the family on to the successor. A
-- token presented again after it was rotated out means that two parties hold
-- the session (one of them with a stolen token, OAuth 2.1 §6.1, RFC 9700
-- §4.14), and the whole family ends: every live member, and every access
-- token issued beside one that may still be alive. Logout, a password change
-- and a reset end families too.
--
-- The family's row is the lock that serialises everything done to one
-- session: rotation, reuse, logout and password changes take it
-- (`for update`) before they read or change its tokens, so two refreshes with
-- the same token never both succeed, and a family that ends cannot gain a
-- member afterwards.
create table token_family (
    id          uuid primary key,
    user_id     bigint not null references app_user (id) on delete cascade,
    created_at  timestamptz not null default now(),
    -- When the session ended (logout, reuse, password change or reset); its
    -- tokens are dead and it gains no new ones.
    ended_at    timestamptz
);
create index token_family_user_id_idx on token_family (user_id);

-- Tokens issued before families each start a family of their own (they were
-- sign-ins of their own as far as anyone can tell now).
alter table refresh_token add column family_id uuid;
insert into token_family (id, user_id, created_at, ended_at)
select id, user_id, created_at, revoked_at from refresh_token;
update refresh_token set family_id = id;
alter table refresh_token
    alter column family_id set not null,
    add constraint refresh_token_family_id_fkey
        foreign key (family_id) references token_family (id) on delete cascade;
create index refresh_token_family_id_idx on refresh_token (family_id);
