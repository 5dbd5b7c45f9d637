//! Refresh-token families: every refresh token descends from one sign-in,
//! and rotation hands the family on to its successor. Presenting a token that
//! was rotated out ends the whole family (OAuth 2.1 §6.1, RFC 9700 §4.14):
//! the server cannot tell a thief's replay from the victim's, so neither
//! keeps the session. Logout and password changes end families the same way.
//!
//! The family's row is the lock that serialises one session: everything that
//! reads or changes a family's tokens first takes it `for update`, and reads
//! the tokens in a later statement, so it sees whatever the previous holder
//! committed. Two refreshes with the same token therefore run one after the
//! other: the first rotates it, the second finds it rotated, which is reuse,
//! and ends the family, the first one's new tokens included. A client that
//! refreshes from two places at once with one token loses its session; the
//! shop's pages share one refresh between their tabs for that reason.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::cache::{announce, Announcement};
use super::AuthContext;

/// What a presented refresh token turned out to be.
pub enum Presented {
    /// A live token of a live family, of user `user_id`: now rotated out,
    /// inside the caller's transaction, which must add its successor with
    /// [`add_token`] in `family` before committing.
    Rotated { family: Uuid, user_id: i64 },
    /// A token rotated out or ended before: its family is now ended (in the
    /// caller's transaction, which must commit and then [`forget`] the
    /// access tokens).
    Reused(Vec<(Uuid, i64)>),
    /// Unknown, expired, or its account is disabled.
    Invalid,
}

/// Starts a family for a sign-in of `user_id`; returns its id.
pub async fn start(conn: &mut PgConnection, user_id: i64) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    sqlx::query("insert into token_family (id, user_id) values ($1, $2)")
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(id)
}

/// Adds a refresh token (its hash) to a family, beside the access token
/// `access_jti`.
pub async fn add_token(
    conn: &mut PgConnection,
    family: Uuid,
    user_id: i64,
    token_hash: &[u8],
    access_jti: Uuid,
    ttl: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into refresh_token (id, user_id, token_hash, access_jti, expires_at, family_id)
         values ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)",
    )
    .bind(Uuid::new_v4())
    .bind(user_id)
    .bind(token_hash)
    .bind(access_jti)
    .bind(ttl.as_secs_f64())
    .bind(family)
    .execute(conn)
    .await?;
    Ok(())
}

/// Presents a refresh token (its hash): rotates it out if it is live, ends
/// its family if it is not. Runs inside the caller's transaction.
pub async fn present(
    conn: &mut PgConnection,
    token_hash: &[u8],
    access_ttl: Duration,
) -> Result<Presented, sqlx::Error> {
    // Lock the family first; the token itself is read afterwards, by a
    // statement that sees what the previous holder of the lock committed.
    let family: Option<Uuid> = sqlx::query_scalar(
        "select f.id from token_family f join refresh_token t on t.family_id = f.id
          where t.token_hash = $1
            for update of f",
    )
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(family) = family else {
        return Ok(Presented::Invalid);
    };
    let (token, user_id, live, expired, disabled): (Uuid, i64, bool, bool, bool) = sqlx::query_as(
        "select t.id, t.user_id, t.revoked_at is null and f.ended_at is null,
                    t.expires_at <= now(), u.disabled_at is not null
               from refresh_token t
               join token_family f on f.id = t.family_id
               join app_user u on u.id = t.user_id
              where t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_one(&mut *conn)
    .await?;
    if expired || disabled {
        return Ok(Presented::Invalid);
    }
    if !live {
        return end(conn, &[family], access_ttl)
            .await
            .map(Presented::Reused);
    }
    sqlx::query("update refresh_token set revoked_at = now() where id = $1")
        .bind(token)
        .execute(&mut *conn)
        .await?;
    Ok(Presented::Rotated { family, user_id })
}

/// The family of the session that access token `jti` was issued in (a
/// token's family never changes). `None` for a token issued without a
/// refresh token.
pub async fn of_access(conn: &mut PgConnection, jti: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select family_id from refresh_token where access_jti = $1 limit 1")
        .bind(jti)
        .fetch_optional(conn)
        .await
}

/// Locks families, always in the order of their ids so that two
/// transactions never wait for each other.
pub async fn lock(conn: &mut PgConnection, families: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("select id from token_family where id = any($1) order by id for update")
        .bind(families)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every live family of `user_id`, locked (in the order of their ids).
pub async fn lock_live(conn: &mut PgConnection, user_id: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from token_family where user_id = $1 and ended_at is null
          order by id
            for update",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// Ends families the caller has locked: they gain no more tokens, their live
/// refresh tokens die, and every access token issued beside one of their
/// tokens in the last `access_ttl` (so possibly still alive) is revoked and
/// announced to every instance when the transaction commits. Returns the
/// newly revoked access tokens (`jti`, expiry in unix seconds), for
/// [`forget`] after the commit. A zero `access_ttl` leaves access tokens to
/// live out their lifetime.
pub async fn end(
    conn: &mut PgConnection,
    families: &[Uuid],
    access_ttl: Duration,
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    if families.is_empty() {
        return Ok(Vec::new());
    }
    let revoked: Vec<(Uuid, f64)> = sqlx::query_as(
        "with f as (update token_family set ended_at = coalesce(ended_at, now())
                     where id = any($1)),
              t as (update refresh_token set revoked_at = now()
                     where family_id = any($1) and revoked_at is null)
         insert into revoked_token (jti, user_id, expires_at)
         select access_jti, user_id, created_at + make_interval(secs => $2)
           from refresh_token
          where family_id = any($1) and created_at + make_interval(secs => $2) > now()
         on conflict (jti) do nothing
         returning jti, extract(epoch from expires_at)::float8",
    )
    .bind(families)
    .bind(access_ttl.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    let revoked: Vec<(Uuid, i64)> = revoked
        .into_iter()
        .map(|(jti, exp)| (jti, exp.ceil() as i64))
        .collect();
    for &(jti, exp) in &revoked {
        announce(&mut *conn, Announcement::Revoked { jti, exp }).await?;
    }
    Ok(revoked)
}

/// After the commit: this instance refuses the revoked access tokens at once
/// (the others do when the announcements reach them).
pub fn forget(ctx: &AuthContext, revoked: &[(Uuid, i64)]) {
    for &(jti, exp) in revoked {
        ctx.cache.revoke(jti, exp);
    }
}
