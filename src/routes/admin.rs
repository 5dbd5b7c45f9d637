//! `/admin/users`, `/admin/outbox`, `/admin/jobs`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{at, Items, Page};
use crate::auth::users::{self, AdminUser, UserChange};
use crate::auth::{AuthContext, AuthUser, Role};
use crate::domain::Problems;
use crate::email::admin::{self as email_admin, OutboxView};
use crate::email::jobs::{self, Job, JobRun, RunOutcome};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/admin/users").get(list))
        .service(at("/admin/users/{id}").patch(update))
        .service(at("/admin/outbox").get(outbox))
        .service(at("/admin/outbox/{id}/retry").post(retry_email))
        .service(at("/admin/jobs").get(jobs))
        .service(at("/admin/jobs/{name}/run").post(run_job));
}

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Items<AdminUser>), (status = 403, description = "forbidden")))]
pub async fn list(
    auth: web::Data<AuthContext>,
    user: AuthUser,
    q: web::Query<Page>,
) -> ApiResult<web::Json<Items<AdminUser>>> {
    user.require(&[Role::Admin])?;
    let (limit, offset) = q.parse()?;
    Ok(web::Json(Items {
        items: users::list(&auth, limit, offset).await?,
    }))
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
    auth: web::Data<AuthContext>,
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
    let change = UserChange {
        role: b.role,
        disabled: b.disabled,
    };
    Ok(web::Json(users::update(&auth, *id, change).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct OutboxQuery {
    /// `pending` (default), `sent` or `dead`.
    pub status: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/outbox", tag = "admin", params(OutboxQuery), security(("bearer" = [])),
    responses((status = 200, body = OutboxView), (status = 403, description = "forbidden"),
              (status = 422, description = "validation_failed")))]
pub async fn outbox(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<OutboxQuery>,
) -> ApiResult<web::Json<OutboxView>> {
    user.require(&[Role::Admin])?;
    let status = q.status.as_deref().unwrap_or("pending");
    let limit = q.limit.unwrap_or(50);
    let mut p = Problems::default();
    if !["pending", "sent", "dead"].contains(&status) {
        p.add("status", "must be pending, sent or dead");
    }
    if !(1..=200).contains(&limit) {
        p.add("limit", "must be between 1 and 200");
    }
    p.finish()?;
    Ok(web::Json(
        email_admin::view(&state.pool, status, limit).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/admin/outbox/{id}/retry", tag = "admin", security(("bearer" = [])),
    responses((status = 204, description = "the dead email is queued again"), (status = 403, description = "forbidden"),
              (status = 404, description = "not_found: no dead email with this id")))]
pub async fn retry_email(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    user.require(&[Role::Admin])?;
    if email_admin::retry_dead(&state.pool, *id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no dead email with this id"))
    }
}

/// A scheduled job and its latest runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobInfo {
    pub name: &'static str,
    /// When this process runs it; `null` when this process runs no jobs.
    pub schedule: Option<String>,
    pub recent_runs: Vec<JobRun>,
}

#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Items<JobInfo>), (status = 403, description = "forbidden")))]
pub async fn jobs(
    state: web::Data<AppState>,
    user: AuthUser,
) -> ApiResult<web::Json<Items<JobInfo>>> {
    user.require(&[Role::Admin])?;
    let mut items = Vec::new();
    for job in Job::ALL {
        items.push(JobInfo {
            name: job.name(),
            schedule: state.settings.email.jobs.map(|t| job.schedule(&t)),
            recent_runs: jobs::recent_runs(&state.pool, job, 10).await?,
        });
    }
    Ok(web::Json(Items { items }))
}

#[utoipa::path(post, path = "/api/v1/admin/jobs/{name}/run", tag = "admin", security(("bearer" = [])),
    responses((status = 201, body = RunOutcome, description = "ran now, for the period a run at this moment covers"),
              (status = 403, description = "forbidden"), (status = 404, description = "not_found: no such job"),
              (status = 409, description = "job_already_ran: that period ran already")))]
pub async fn run_job(
    state: web::Data<AppState>,
    user: AuthUser,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    user.require(&[Role::Admin])?;
    let job = Job::parse(&name).ok_or(ApiError::NotFound("no such job"))?;
    let now = crate::db::now(&state.pool).await?;
    let outcome = jobs::run(&state.pool, job, now, "admin").await?;
    if !outcome.ran {
        return Err(ApiError::JobAlreadyRan(format!(
            "{} already ran for {} (at {}, {} emails)",
            outcome.job,
            outcome.period,
            outcome.ran_at.to_rfc3339(),
            outcome.emails
        )));
    }
    Ok(HttpResponse::Created().json(outcome))
}
