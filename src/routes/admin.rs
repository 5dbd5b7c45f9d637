//! `/admin/users`.

use actix_web::web;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Items, Page};
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::startup::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(list))
        .route("/admin/users/{id}", web::patch().to(update));
}

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

const COLUMNS: &str = "id, username, email, role, disabled_at is not null as disabled,
                       email_verified_at is not null as email_verified, created_at";

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Items<AdminUser>), (status = 403, description = "forbidden")))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<Page>,
) -> ApiResult<web::Json<Items<AdminUser>>> {
    user.require(&[Role::Admin])?;
    let (limit, offset) = q.parse()?;
    let items = sqlx::query_as(&format!(
        "select {COLUMNS} from app_user order by id limit $1 offset $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    Ok(web::Json(Items { items }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<Role>,
    /// `true` disables the account (its tokens stop working at once).
    pub disabled: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", request_body = UpdateUser, security(("bearer" = [])),
    responses((status = 200, body = AdminUser), (status = 403, description = "forbidden"), (status = 404, description = "not_found"),
              (status = 422, description = "validation_failed")))]
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    body: Json<UpdateUser>,
) -> ApiResult<web::Json<AdminUser>> {
    user.require(&[Role::Admin])?;
    let b = body.0;
    if *id == user.id && (b.disabled == Some(true) || b.role.is_some_and(|r| r != Role::Admin)) {
        return Err(ApiError::field(
            "id",
            "admins cannot disable or demote themselves",
        ));
    }
    let mut tx = state.pool.begin().await?;
    let updated: Option<AdminUser> = sqlx::query_as(&format!(
        "update app_user set role = coalesce($2, role),
                             disabled_at = case when $3 is null then disabled_at
                                                when $3 then coalesce(disabled_at, now())
                                                else null end
          where id = $1 returning {COLUMNS}"
    ))
    .bind(*id)
    .bind(b.role.map(Role::as_str))
    .bind(b.disabled)
    .fetch_optional(&mut *tx)
    .await?;
    let updated = updated.ok_or(ApiError::NotFound("no such user"))?;
    // Every instance forgets what it knew of this user once this commits.
    sqlx::query("select pg_notify($1, $2)")
        .bind(crate::auth::cache::CHANNEL)
        .bind(format!("user:{}", *id))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.auth_cache.forget_user(*id);
    Ok(web::Json(updated))
}
