//! Operational endpoints: health, readiness, metrics, and `/docs`, which
//! leads to the Swagger UI (wired with the OpenAPI document beside the routes,
//! in `startup`, since the document lists these handlers).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::at;
use crate::config::ExposeSecret;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/healthz").get(healthz))
        .service(at("/readyz").get(readyz))
        .service(at("/metrics").get(metrics))
        .service(at("/docs").get(docs_redirect));
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "ok")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The primary answers: ready. The answer says which database roles this
/// instance reaches: `primary`; when `DATABASE_URL` names several hosts, the
/// one it follows now and how many times it moved (`following`); and with
/// `DATABASE_READ_URL` the replica as its last probe found it (a replica that
/// is down or behind only sends the reads to the primary).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready: `{status, databases: {primary, following?: {host, failovers}, replica?: {reachable, fresh, lag_bytes}}}`"),
              (status = 503, description = "the primary is unreachable")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match crate::db::ping(&state.pool).await {
        Ok(_) => {
            let mut databases = serde_json::json!({ "primary": "ok" });
            if let Some(f) = state.pool.follower() {
                databases["following"] =
                    serde_json::json!({ "host": f.current_host(), "failovers": f.failovers() });
            }
            if let Some(r) = &state.replica {
                databases["replica"] = serde_json::json!(r.state());
            }
            HttpResponse::Ok()
                .json(serde_json::json!({ "status": "ready", "databases": databases }))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(serde_json::json!({
                    "error": { "code": "busy", "message": "the database is not reachable" }
                }))
        }
    }
}

/// Prometheus text format; with `METRICS_TOKEN` set, only for its bearer.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
              (status = 401, description = "unauthorized: METRICS_TOKEN is set and the bearer token is not it")))]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    if let Some(token) = &state.settings.metrics_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared as digests: the time taken says nothing of the token.
        if Sha256::digest(given.as_bytes()) != Sha256::digest(token.expose_secret().as_bytes()) {
            return Err(ApiError::Unauthorized("/metrics needs its bearer token"));
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body({
            let mut pools = vec![
                ("primary", &state.pool),
                ("engine", state.engine.own_pool()),
            ];
            if let Some(r) = &state.replica {
                pools.push(("replica", r.db()));
            }
            state.metrics.render(
                &pools,
                state.replica.as_ref().map(|r| r.state()),
                state.pool.follower().map(|f| f.failovers()),
            )
        }))
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/docs/"))
        .finish()
}
