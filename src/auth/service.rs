//! Registration, login, refresh-token rotation and logout.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::cache::{announce, Announcement};
use super::{family, password, AuthContext, AuthUser, Role};
use crate::db::Db;
use crate::domain::{Email, Password, Username};
use crate::error::ApiError;

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    #[schema(value_type = Role)]
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// What register, login and refresh answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

const USER_COLUMNS: &str = "id, username, email, role, created_at";

/// Creates a customer account and signs it in.
pub async fn register(
    ctx: &AuthContext,
    username: Username,
    email: Email,
    password: Password,
) -> Result<Session, ApiError> {
    let hash = password::hash(password.into_inner(), ctx.bcrypt_cost).await?;
    // The account, its verification token and the email carrying it commit
    // together, in one statement.
    let token = random_token();
    let user: User = sqlx::query_as(&format!(
        "with u as (
             insert into app_user (username, email, password_hash) values ($1, $2, $3)
             returning {USER_COLUMNS}),
         expiry as (select now() + make_interval(secs => $5) as at),
         t as (insert into email_token (token_hash, user_id, purpose, expires_at)
               select $4, u.id, 'verify_email', expiry.at from u, expiry),
         m as (insert into outbox (kind, user_id, payload)
               select 'verify_email', u.id,
                      jsonb_build_object('token', $6::text, 'expires_at', expiry.at)
                 from u, expiry)
         select {USER_COLUMNS} from u"
    ))
    .bind(username.as_str())
    .bind(email.as_str())
    .bind(hash)
    .bind(hash_token(&token))
    .bind(ctx.verify_token_ttl.as_secs_f64())
    .bind(&token)
    .fetch_one(&ctx.pool)
    .await?;
    sign_in(ctx, user).await
}

/// Checks a username (or email) and password. Unknown users and wrong
/// passwords get the same answer, after the same amount of work: the work of
/// a hash at the configured cost, whatever the cost of the stored hash (see
/// [`password::verify_at`]). A stored hash of another cost is replaced by one
/// at the configured cost once the password is known to be right.
pub async fn login(ctx: &AuthContext, login: &str, pw: String) -> Result<Session, ApiError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: User,
        password_hash: String,
        disabled: bool,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {USER_COLUMNS}, password_hash, disabled_at is not null as disabled
           from app_user
          where lower(username) = lower($1) or lower(email) = lower($1)
          limit 1"
    ))
    .bind(login)
    .fetch_optional(&ctx.pool)
    .await?;
    let Some(row) = row else {
        password::verify_dummy(pw, ctx.bcrypt_cost).await?;
        return Err(ApiError::InvalidCredentials);
    };
    let stale = password::cost_of(&row.password_hash) != Some(ctx.bcrypt_cost);
    let pw_again = stale.then(|| pw.clone());
    if !password::verify_at(pw, row.password_hash.clone(), ctx.bcrypt_cost).await? {
        return Err(ApiError::InvalidCredentials);
    }
    if row.disabled {
        return Err(ApiError::Forbidden("this account is disabled"));
    }
    if let Some(pw) = pw_again {
        let hash = password::hash(pw, ctx.bcrypt_cost).await?;
        // Only over the hash just checked: a password changed meanwhile wins.
        sqlx::query("update app_user set password_hash = $3 where id = $1 and password_hash = $2")
            .bind(row.user.id)
            .bind(&row.password_hash)
            .bind(hash)
            .execute(&ctx.pool)
            .await?;
    }
    sign_in(ctx, row.user).await
}

/// Trades a refresh token for a new pair; the old one dies in the same
/// transaction. A token presented again after it was traded ends its whole
/// family, and is refused (see [`family`]).
pub async fn refresh(ctx: &AuthContext, refresh_token: &str) -> Result<Session, ApiError> {
    let mut tx = ctx.pool.begin().await?;
    let presented = family::present(&mut tx, &hash_token(refresh_token), ctx.jwt.ttl()).await?;
    let (family, user_id) = match presented {
        family::Presented::Rotated { family, user_id } => (family, user_id),
        family::Presented::Reused(revoked) => {
            tx.commit().await?;
            family::forget(ctx, &revoked);
            tracing::warn!("a rotated refresh token was presented again: its session is ended");
            return Err(ApiError::Unauthorized(
                "this refresh token was used already: the session is ended, sign in again",
            ));
        }
        family::Presented::Invalid => {
            return Err(ApiError::Unauthorized("the refresh token is not valid"))
        }
    };
    let user: User = sqlx::query_as(&format!(
        "select {USER_COLUMNS} from app_user where id = $1"
    ))
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    let session = issue_session(ctx, &mut tx, family, user).await?;
    tx.commit().await?;
    Ok(session)
}

/// Ends the session of the access token in use: that token, and the whole
/// refresh-token family it belongs to (so also the session's newer refresh
/// tokens and their access tokens, when an older access token logs out), here
/// at once and on the other instances when they hear of it.
pub async fn logout(ctx: &AuthContext, user: &AuthUser) -> Result<(), ApiError> {
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "insert into revoked_token (jti, user_id, expires_at)
         values ($1, $2, to_timestamp($3)) on conflict (jti) do nothing",
    )
    .bind(user.jti)
    .bind(user.id)
    .bind(user.exp as f64)
    .execute(&mut *tx)
    .await?;
    // Every instance learns of the revocation once this commits.
    let (jti, exp) = (user.jti, user.exp);
    announce(&mut *tx, Announcement::Revoked { jti, exp }).await?;
    let session = family::of_access(&mut tx, jti).await?;
    family::lock(&mut tx, session.as_slice()).await?;
    let ended = family::end(&mut tx, session.as_slice(), ctx.jwt.ttl()).await?;
    tx.commit().await?;
    ctx.cache.revoke(jti, exp);
    family::forget(ctx, &ended);
    Ok(())
}

/// The signed-in user's own record.
pub async fn me(pool: &Db, user_id: i64) -> Result<User, ApiError> {
    sqlx::query_as(&format!(
        "select {USER_COLUMNS} from app_user where id = $1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("no such user"))
}

/// Deletes revocation and refresh rows that are of no more use. A rotated
/// refresh token is kept until it would have expired, so that presenting it
/// again is recognised as reuse; the tokens of an ended session go a day
/// after it ended, and a family with no tokens left goes with them.
pub async fn sweep_expired(pool: &Db) -> Result<u64, sqlx::Error> {
    let a = sqlx::query("delete from revoked_token where expires_at < now() - interval '1 minute'")
        .execute(pool)
        .await?
        .rows_affected();
    let b = sqlx::query(
        "delete from refresh_token
          where expires_at < now()
             or family_id in (select id from token_family
                               where ended_at < now() - interval '1 day')",
    )
    .execute(pool)
    .await?
    .rows_affected();
    let c = sqlx::query(
        "delete from token_family f
          where not exists (select 1 from refresh_token t where t.family_id = f.id)",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(a + b + c)
}

/// Starts a session for a sign-in: a new family and its first pair.
async fn sign_in(ctx: &AuthContext, user: User) -> Result<Session, ApiError> {
    let mut tx = ctx.pool.begin().await?;
    let family = family::start(&mut tx, user.id).await?;
    let session = issue_session(ctx, &mut tx, family, user).await?;
    tx.commit().await?;
    Ok(session)
}

/// A new access token, and a refresh token beside it in `family`.
async fn issue_session(
    ctx: &AuthContext,
    conn: &mut PgConnection,
    family: Uuid,
    user: User,
) -> Result<Session, ApiError> {
    let role = Role::parse(&user.role)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown role {:?}", user.role)))?;
    let (access_token, claims) = ctx.jwt.issue(user.id, role)?;
    let refresh_token = random_token();
    let hash = hash_token(&refresh_token);
    family::add_token(
        conn,
        family,
        user.id,
        &hash,
        claims.jti,
        ctx.refresh_token_ttl,
    )
    .await?;
    Ok(Session {
        user,
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ctx.jwt.ttl().as_secs(),
    })
}

pub(crate) fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

pub(crate) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
