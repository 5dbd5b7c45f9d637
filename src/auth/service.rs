//! Registration, login, refresh-token rotation and logout.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::cache::{announce, Announcement};
use super::{password, AuthContext, AuthUser, Role};
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
    issue_session(ctx, user).await
}

/// Checks a username (or email) and password. Unknown users and wrong
/// passwords get the same answer, after the same amount of work.
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
    if !password::verify(pw, row.password_hash).await? {
        return Err(ApiError::InvalidCredentials);
    }
    if row.disabled {
        return Err(ApiError::Forbidden("this account is disabled"));
    }
    issue_session(ctx, row.user).await
}

/// Trades a refresh token for a new pair. The old refresh token dies in the
/// same statement that finds it, so it can be used once only.
pub async fn refresh(ctx: &AuthContext, refresh_token: &str) -> Result<Session, ApiError> {
    let user: Option<User> = sqlx::query_as(&format!(
        "with used as (
             update refresh_token set revoked_at = now()
              where token_hash = $1 and revoked_at is null and expires_at > now()
             returning user_id)
         select {USER_COLUMNS} from app_user
          where id = (select user_id from used) and disabled_at is null"
    ))
    .bind(hash_token(refresh_token))
    .fetch_optional(&ctx.pool)
    .await?;
    let user = user.ok_or(ApiError::Unauthorized("the refresh token is not valid"))?;
    issue_session(ctx, user).await
}

/// Revokes the access token in use and every refresh token issued with it,
/// here at once and on the other instances when they hear of it.
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
    sqlx::query(
        "update refresh_token set revoked_at = now() where access_jti = $1 and revoked_at is null",
    )
    .bind(user.jti)
    .execute(&mut *tx)
    .await?;
    // Every instance learns of the revocation once this commits.
    let (jti, exp) = (user.jti, user.exp);
    announce(&mut *tx, Announcement::Revoked { jti, exp }).await?;
    tx.commit().await?;
    ctx.cache.revoke(jti, exp);
    Ok(())
}

/// The signed-in user's own record.
pub async fn me(pool: &PgPool, user_id: i64) -> Result<User, ApiError> {
    sqlx::query_as(&format!(
        "select {USER_COLUMNS} from app_user where id = $1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("no such user"))
}

/// Deletes revocation and refresh rows that have expired anyway.
pub async fn sweep_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let a = sqlx::query("delete from revoked_token where expires_at < now() - interval '1 minute'")
        .execute(pool)
        .await?
        .rows_affected();
    let b = sqlx::query(
        "delete from refresh_token where expires_at < now() or revoked_at < now() - interval '1 day'",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(a + b)
}

async fn issue_session(ctx: &AuthContext, user: User) -> Result<Session, ApiError> {
    let role = Role::parse(&user.role)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown role {:?}", user.role)))?;
    let (access_token, claims) = ctx.jwt.issue(user.id, role)?;
    let refresh_token = random_token();
    sqlx::query(
        "insert into refresh_token (id, user_id, token_hash, access_jti, expires_at)
         values ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(Uuid::new_v4())
    .bind(user.id)
    .bind(hash_token(&refresh_token))
    .bind(claims.jti)
    .bind(ctx.refresh_token_ttl.as_secs() as f64)
    .execute(&ctx.pool)
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
