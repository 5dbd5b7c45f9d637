//! Accounts as admins manage them: `/admin/users`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::cache::{announce, Announcement};
use super::{AuthContext, Role};
use crate::error::ApiError;

/// A user as admins see it.
#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AdminUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    #[schema(value_type = Role)]
    pub role: String,
    pub disabled: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// A validated change; `None` leaves a field as it is.
pub struct UserChange {
    pub role: Option<Role>,
    /// `Some(true)` disables the account, `Some(false)` enables it again.
    pub disabled: Option<bool>,
}

const COLUMNS: &str = "id, username, email, role, disabled_at is not null as disabled,
                       email_verified_at is not null as email_verified, created_at";

/// A page of users, by id.
pub async fn list(ctx: &AuthContext, limit: i64, offset: i64) -> Result<Vec<AdminUser>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from app_user order by id limit $1 offset $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(&ctx.pool)
    .await?)
}

/// Changes a user's role or status. Their tokens obey the change on the next
/// request, on every instance: this one forgets the user at once, the others
/// when the announcement arrives.
pub async fn update(ctx: &AuthContext, id: i64, c: UserChange) -> Result<AdminUser, ApiError> {
    let mut tx = ctx.pool.begin().await?;
    let updated: Option<AdminUser> = sqlx::query_as(&format!(
        "update app_user set role = coalesce($2, role),
                             disabled_at = case when $3 is null then disabled_at
                                                when $3 then coalesce(disabled_at, now())
                                                else null end
          where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(c.role.map(Role::as_str))
    .bind(c.disabled)
    .fetch_optional(&mut *tx)
    .await?;
    let updated = updated.ok_or(ApiError::NotFound("no such user"))?;
    announce(&mut *tx, Announcement::UserChanged(id)).await?;
    tx.commit().await?;
    ctx.cache.forget_user(id);
    Ok(updated)
}
