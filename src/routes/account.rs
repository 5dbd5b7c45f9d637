//! Account links that arrive by email: verify the address, reset a forgotten
//! password, unsubscribe from announcements.
//!
//! The links are opened in a browser, so `verify` and `unsubscribe` answer a
//! small HTML page to clients that accept HTML and JSON to the others.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::at;
use crate::auth::{account, AuthContext, AuthUser};
use crate::domain::{Email, Password, Problems};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{client_ip, Json};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/auth/verify").get(verify))
        .service(at("/auth/verify/resend").post(resend))
        .service(at("/auth/forgot").post(forgot))
        .service(at("/auth/reset").post(reset))
        .service(at("/unsubscribe").get(unsubscribe).post(unsubscribe));
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TokenQuery {
    pub token: Option<String>,
}

fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// A one-message HTML page; `message` is escaped.
fn page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // No scripts, nothing loaded: only the page's own inline style.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t} · flashsale</title></head>\
             <body style=\"font-family:sans-serif;max-width:480px;margin:48px auto;padding:0 16px\">\
             <h1>{t}</h1><p>{m}</p><p><a href=\"/\">Go to the shop</a></p></body></html>",
            t = esc(title),
            m = esc(message)
        ))
}

/// A link's outcome as a page or as JSON.
fn answer(
    req: &HttpRequest,
    result: Result<(), ApiError>,
    done_title: &str,
    done_message: &str,
    json: serde_json::Value,
) -> ApiResult<HttpResponse> {
    match (result, wants_html(req)) {
        (Ok(()), true) => Ok(page(StatusCode::OK, done_title, done_message)),
        (Ok(()), false) => Ok(HttpResponse::Ok().json(json)),
        (Err(e @ ApiError::InvalidToken(_)), true) => Ok(page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            &e.to_string(),
        )),
        (Err(e), _) => Err(e),
    }
}

fn token_of(q: &TokenQuery) -> Result<&str, ApiError> {
    match q.token.as_deref() {
        Some(t) if !t.is_empty() && t.len() <= 128 => Ok(t),
        _ => Err(ApiError::InvalidToken("the link has no valid token")),
    }
}

#[utoipa::path(get, path = "/api/v1/auth/verify", tag = "auth", params(TokenQuery),
    responses((status = 200, description = "`{\"verified\": true}`, or a page for browsers"),
              (status = 400, description = "invalid_token; a page for browsers",
              content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn verify(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> ApiResult<HttpResponse> {
    let result = match token_of(&q) {
        Ok(t) => account::verify_email(&auth.pool, t).await,
        Err(e) => Err(e),
    };
    answer(
        &req,
        result,
        "Email address confirmed",
        "Thank you: your email address is confirmed.",
        serde_json::json!({ "verified": true }),
    )
}

#[utoipa::path(post, path = "/api/v1/auth/verify/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202, description = "`{\"sent\": bool}`: false when the address is verified already"),
              (status = 401, description = "unauthorized"), (status = 429, description = "rate_limited: 3 at once, then one a minute per account")))]
pub async fn resend(auth: web::Data<AuthContext>, user: AuthUser) -> ApiResult<HttpResponse> {
    auth.check_resend(user.id)?;
    let sent = account::resend_verification(&auth.pool, user.id, auth.verify_token_ttl).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "sent": sent })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ForgotRequest {
    pub email: String,
}

#[utoipa::path(post, path = "/api/v1/auth/forgot", tag = "auth", request_body = ForgotRequest,
    responses((status = 202, description = "the same answer whether or not the address has an account"),
              (status = 422, description = "validation_failed"), (status = 429, description = "rate_limited")))]
pub async fn forgot(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    body: Json<ForgotRequest>,
) -> ApiResult<HttpResponse> {
    auth.check_ip(client_ip(&req))?;
    let email = Email::parse(&body.0.email).map_err(|p| ApiError::field("email", p))?;
    auth.check_forgot(email.as_str())?;
    // The work happens after the answer, so neither the answer nor its timing
    // tells whether the address has an account.
    let (pool, ttl) = (auth.pool.clone(), auth.reset_token_ttl);
    tokio::spawn(async move {
        if let Err(e) = account::request_reset(&pool, email.as_str(), ttl).await {
            tracing::warn!(error = %e, "queueing a password reset failed");
        }
    });
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "message": "If this address belongs to an account, a reset link is on its way."
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    /// From the reset email's link.
    pub token: String,
    /// 8 to 72 bytes of UTF-8 (bcrypt reads no further).
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/reset", tag = "auth", request_body = ResetRequest,
    responses((status = 204, description = "password changed; every session of the account is signed out"),
              (status = 400, description = "invalid_token"), (status = 422, description = "validation_failed"),
              (status = 429, description = "rate_limited")))]
pub async fn reset(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    body: Json<ResetRequest>,
) -> ApiResult<HttpResponse> {
    auth.check_ip(client_ip(&req))?;
    let b = body.0;
    let mut p = Problems::default();
    let password = p.check("password", Password::parse(&b.password));
    p.finish()?;
    let Some(password) = password else {
        unreachable!("finish() returned Ok, so the password parsed");
    };
    if b.token.is_empty() || b.token.len() > 128 {
        return Err(ApiError::InvalidToken("the reset token is not valid"));
    }
    account::reset_password(&auth.pool, &b.token, password, auth.bcrypt_cost).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(method(get, post), path = "/api/v1/unsubscribe", tag = "auth", params(TokenQuery),
    responses((status = 200, description = "`{\"unsubscribed\": true}`, or a page for browsers; POST does the same (one-click)"),
              (status = 400, description = "invalid_token; a page for browsers",
              content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn unsubscribe(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> ApiResult<HttpResponse> {
    let result = match token_of(&q).map(Uuid::parse_str) {
        Ok(Ok(t)) => account::unsubscribe(&auth.pool, t).await,
        _ => Err(ApiError::InvalidToken("this unsubscribe link is not valid")),
    };
    answer(
        &req,
        result,
        "Unsubscribed",
        "You will no longer receive announcements of new products. Order emails still arrive.",
        serde_json::json!({ "unsubscribed": true }),
    )
}
