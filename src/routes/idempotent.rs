//! `Idempotency-Key` on routes with an effect: the first answer for a key is
//! replayed to every retry, with `Idempotent-Replayed: true` (see
//! [`crate::db::idempotency`]).

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use crate::db::idempotency::{self, Answer, Claim, Key};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The request's `Idempotency-Key`, if it has one; `validation_failed` when
/// it is not 1 to 255 visible ASCII characters.
pub fn key_of(req: &HttpRequest) -> ApiResult<Option<Key>> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => Key::parse(v.as_bytes())
            .map(Some)
            .map_err(|p| ApiError::field("Idempotency-Key", p)),
    }
}

/// Serves `work` with the request's `Idempotency-Key` when it has one (see
/// [`serve`]), or simply once without. `request` is what the fingerprint
/// covers besides method and path.
pub async fn answer<F>(
    state: &AppState,
    req: &HttpRequest,
    user_id: i64,
    request: &Value,
    work: F,
) -> ApiResult<HttpResponse>
where
    F: Future<Output = ApiResult<(StatusCode, Value)>>,
{
    match key_of(req)? {
        None => {
            let (status, body) = work.await?;
            Ok(HttpResponse::build(status).json(body))
        }
        Some(key) => serve(state, req, user_id, key, request, work).await,
    }
}

/// Serves `work` once per (user, key): a retry gets the first answer again.
/// `request` is what the fingerprint covers besides method and path. Answers
/// that say "try again" (`busy`, `rate_limited`, an internal error) are not
/// kept, so a retry is served afresh.
pub async fn serve<F>(
    state: &AppState,
    req: &HttpRequest,
    user_id: i64,
    key: Key,
    request: &Value,
    work: F,
) -> ApiResult<HttpResponse>
where
    F: Future<Output = ApiResult<(StatusCode, Value)>>,
{
    let fingerprint = idempotency::fingerprint(req.method().as_str(), req.path(), request);
    match idempotency::claim(&state.pool, user_id, &key, &fingerprint).await? {
        Claim::Replay(answer) => Ok(respond(&answer, true)),
        Claim::Mine => {
            let answer = match work.await {
                Ok((status, body)) => Answer {
                    status: status.as_u16(),
                    body,
                },
                Err(e @ (ApiError::Busy(_) | ApiError::RateLimited(_) | ApiError::Internal(_))) => {
                    if let Err(db) = idempotency::abandon(&state.pool, user_id, &key).await {
                        tracing::warn!(error = %db, "cannot give up an idempotency key");
                    }
                    return Err(e);
                }
                Err(e) => Answer {
                    status: actix_web::ResponseError::status_code(&e).as_u16(),
                    body: e.body(),
                },
            };
            // Not kept (the database went away): the answer still goes out;
            // a retry finds the claim abandoned after a while and is served
            // again, which the purchase rules make harmless.
            if let Err(e) = idempotency::complete(&state.pool, user_id, &key, &answer).await {
                tracing::warn!(error = %e, "cannot keep an idempotent answer");
            }
            Ok(respond(&answer, false))
        }
    }
}

fn respond(answer: &Answer, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut resp = HttpResponse::build(status);
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.json(&answer.body)
}
