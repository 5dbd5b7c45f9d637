//! What an account does by email: verify its address, reset a forgotten
//! password, and opt out of announcements. Tokens travel by email only; the
//! database keeps their SHA-256 hashes, each usable once and until it expires.

use std::time::Duration;

use uuid::Uuid;

use super::cache::{announce, Announcement};
use super::service::{hash_token, random_token};
use crate::db::Db;
use crate::domain::Password;
use crate::error::ApiError;

/// Marks the address of the token's account as verified.
pub async fn verify_email(pool: &Db, token: &str) -> Result<(), ApiError> {
    let user: Option<i64> = sqlx::query_scalar(
        "with used as (
             update email_token set used_at = now()
              where token_hash = $1 and purpose = 'verify_email'
                and used_at is null and expires_at > now()
             returning user_id)
         update app_user set email_verified_at = coalesce(email_verified_at, now())
          where id = (select user_id from used)
         returning id",
    )
    .bind(hash_token(token))
    .fetch_optional(pool)
    .await?;
    user.map(|_| ()).ok_or(ApiError::InvalidToken(
        "this link is not valid: it was used, or it expired",
    ))
}

/// Sends a new verification email, unless the address is verified already
/// (`false`).
pub async fn resend_verification(pool: &Db, user_id: i64, ttl: Duration) -> Result<bool, ApiError> {
    let token = random_token();
    let queued: Option<i64> = sqlx::query_scalar(
        "with u as (select id from app_user where id = $1 and email_verified_at is null),
              expiry as (select now() + make_interval(secs => $3) as at),
              t as (insert into email_token (token_hash, user_id, purpose, expires_at)
                    select $2, u.id, 'verify_email', expiry.at from u, expiry)
         insert into outbox (kind, user_id, payload)
         select 'verify_email', u.id, jsonb_build_object('token', $4::text, 'expires_at', expiry.at)
           from u, expiry
         returning id",
    )
    .bind(user_id)
    .bind(hash_token(&token))
    .bind(ttl.as_secs_f64())
    .bind(&token)
    .fetch_optional(pool)
    .await?;
    Ok(queued.is_some())
}

/// Queues a reset email if `email` belongs to an active account; earlier
/// reset links of that account stop working. Says nothing about whether it
/// did: the caller answers the same either way.
pub async fn request_reset(pool: &Db, email: &str, ttl: Duration) -> Result<(), ApiError> {
    let token = random_token();
    sqlx::query(
        "with u as (select id from app_user
                     where lower(email) = lower($1) and disabled_at is null),
              old as (update email_token set used_at = now()
                       where user_id = (select id from u) and purpose = 'password_reset'
                         and used_at is null),
              expiry as (select now() + make_interval(secs => $3) as at),
              t as (insert into email_token (token_hash, user_id, purpose, expires_at)
                    select $2, u.id, 'password_reset', expiry.at from u, expiry)
         insert into outbox (kind, user_id, payload)
         select 'password_reset', u.id, jsonb_build_object('token', $4::text, 'expires_at', expiry.at)
           from u, expiry",
    )
    .bind(email)
    .bind(hash_token(&token))
    .bind(ttl.as_secs_f64())
    .bind(&token)
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets a new password with a reset token, which dies in the same
/// transaction, and signs the account out everywhere (its refresh tokens are
/// revoked; access tokens already issued live out their short lifetime), and
/// every instance forgets what it cached of the account. Returns the
/// account's id.
pub async fn reset_password(
    pool: &Db,
    token: &str,
    password: Password,
    bcrypt_cost: u32,
) -> Result<i64, ApiError> {
    // Hash first: bcrypt is slow and must not run inside the transaction.
    let hash = super::password::hash(password.into_inner(), bcrypt_cost).await?;
    let mut tx = pool.begin().await?;
    let user: Option<i64> = sqlx::query_scalar(
        "update email_token set used_at = now()
          where token_hash = $1 and purpose = 'password_reset'
            and used_at is null and expires_at > now()
          returning user_id",
    )
    .bind(hash_token(token))
    .fetch_optional(&mut *tx)
    .await?;
    let user = user.ok_or(ApiError::InvalidToken(
        "this reset link is not valid: it was used, it expired, or a newer one was sent",
    ))?;
    // Whoever reads the reset email controls the address: it counts as
    // verified.
    sqlx::query(
        "update app_user set password_hash = $2,
                email_verified_at = coalesce(email_verified_at, now())
          where id = $1",
    )
    .bind(user)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    // Every session ends; access tokens live out their short lifetime.
    let sessions = super::family::lock_live(&mut tx, user).await?;
    super::family::end(&mut tx, &sessions, Duration::ZERO).await?;
    announce(&mut *tx, Announcement::UserChanged(user)).await?;
    tx.commit().await?;
    Ok(user)
}

/// Turns announcements off for the account of an unsubscribe token.
pub async fn unsubscribe(pool: &Db, token: Uuid) -> Result<(), ApiError> {
    let done =
        sqlx::query("update app_user set announcements = false where unsubscribe_token = $1")
            .bind(token)
            .execute(pool)
            .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ApiError::InvalidToken("this unsubscribe link is not valid"))
    }
}

/// Changes a signed-in user's password, given the current one, and ends the
/// account's other sessions: their refresh-token families end, and every
/// access token issued in them is revoked on every instance at once. The
/// session that asked (its whole family) stays signed in.
pub async fn change_password(
    ctx: &super::AuthContext,
    user: &super::AuthUser,
    current: String,
    new: Password,
) -> Result<(), ApiError> {
    let stored: Option<String> =
        sqlx::query_scalar("select password_hash from app_user where id = $1")
            .bind(user.id)
            .fetch_optional(&ctx.pool)
            .await?;
    let stored = stored.ok_or(ApiError::NotFound("no such user"))?;
    if !super::password::verify(current, stored).await? {
        return Err(ApiError::field(
            "current_password",
            "is not the account's password",
        ));
    }
    // Hash first: bcrypt is slow and must not run inside the transaction.
    let hash = super::password::hash(new.into_inner(), ctx.bcrypt_cost).await?;
    let mut tx = ctx.pool.begin().await?;
    sqlx::query("update app_user set password_hash = $2 where id = $1")
        .bind(user.id)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    // Every other session (refresh-token family): its refresh tokens, and
    // every access token issued in it that may still be alive.
    let this = super::family::of_access(&mut tx, user.jti).await?;
    let mut others = super::family::lock_live(&mut tx, user.id).await?;
    others.retain(|f| Some(*f) != this);
    let ended = super::family::end(&mut tx, &others, ctx.jwt.ttl()).await?;
    tx.commit().await?;
    super::family::forget(ctx, &ended);
    Ok(())
}
