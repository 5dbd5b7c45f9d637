//! Paying for an order, the provider's webhook, and the built-in test
//! provider's routes (its hosted page's API and the machine routes).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{at, idempotent, Items};
use crate::auth::AuthUser;
use crate::db::payments::{self, Payment};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, RawBody};
use crate::payment::test_provider::{card_outcome, Outcome, TestCharge, TestProvider};
use crate::payment::{signature, Paying};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/orders/{id}/pay").post(pay))
        .service(at("/orders/{id}/payments").get(list))
        .service(at("/payments/webhook").post(webhook))
        .service(at("/test-provider/payments/{id}").get(test_charge))
        .service(at("/test-provider/payments/{id}/card").post(test_card))
        .service(at("/test-provider/payments/{id}/succeed").post(test_succeed))
        .service(at("/test-provider/payments/{id}/fail").post(test_fail));
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "payments", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a retry with the same key gets the first answer again")),
    responses((status = 201, body = Payment, description = "a payment opened: send the shopper to `redirect_url`"),
              (status = 200, body = Payment, description = "the order's open payment, opened before"),
              (status = 401, description = "unauthorized"),
              (status = 404, description = "not_found (also someone else's order)"),
              (status = 409, description = "order_not_payable, hold_expired, request_in_progress"),
              (status = 422, description = "idempotency_key_reused"),
              (status = 503, description = "busy: retry after Retry-After")))]
pub async fn pay(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let order_id = *id;
    let work = async {
        let (status, payment) = match state.payments.pay(user.id, order_id).await? {
            Paying::Opened(p) => (StatusCode::CREATED, p),
            Paying::Existing(p) => (StatusCode::OK, p),
        };
        let body = serde_json::to_value(payment).map_err(anyhow::Error::from)?;
        Ok((status, body))
    };
    idempotent::answer(&state, &req, user.id, &serde_json::json!({}), work).await
}

#[utoipa::path(get, path = "/api/v1/orders/{id}/payments", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = Items<Payment>, description = "the order's payments, newest first"),
              (status = 401, description = "unauthorized"),
              (status = 404, description = "not_found (also someone else's order)")))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> ApiResult<web::Json<Items<Payment>>> {
    // Someone else's order is not found, as on `/orders/{id}`.
    let order = crate::db::orders::get(&state.pool, *id, user.id, user.is_admin()).await?;
    Ok(web::Json(Items {
        items: payments::of_order(&state.pool, order.id).await?,
    }))
}

/// The answer to a webhook delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Received {
    pub received: bool,
    /// `applied`, `replayed` (this event id was handled before) or `ignored`
    /// (a type the shop does not act on).
    pub result: &'static str,
}

#[utoipa::path(post, path = "/api/v1/payments/webhook", tag = "payments",
    request_body(content = String, description = "the provider's event: `{id, type: payment.succeeded | payment.failed, data: {payment_id, order_id, amount_cents, currency}}`, signed in `Flashsale-Signature`", content_type = "application/json"),
    params(("Flashsale-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` with PAYMENT_WEBHOOK_SECRET")),
    responses((status = 200, body = Received),
              (status = 400, description = "invalid_signature (bad, missing or more than 300 s off; nothing written), bad_request (not an event, or not about this payment)"),
              (status = 404, description = "not_found: no such payment"),
              (status = 413, description = "payload_too_large"),
              (status = 503, description = "busy: retry after Retry-After")))]
pub async fn webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> ApiResult<web::Json<Received>> {
    let header = req.headers().get(signature::HEADER).map(|v| v.as_bytes());
    let handled = state.payments.webhook(header, &body.0).await?;
    Ok(web::Json(Received {
        received: true,
        result: handled.as_str(),
    }))
}

fn test_provider(state: &AppState) -> ApiResult<&TestProvider> {
    state.test_provider.as_deref().ok_or(ApiError::NotFound(
        "the test payment provider is not configured",
    ))
}

fn payment_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest("an id in the path is not an id".into()))
}

#[utoipa::path(get, path = "/api/v1/test-provider/payments/{id}", tag = "test-provider",
    params(("id" = Uuid, Path, description = "the payment's id at the provider")),
    responses((status = 200, body = TestCharge, description = "the charge, as the provider's hosted page shows it"),
              (status = 400, description = "bad_request: not a payment id"),
              (status = 404, description = "not_found")))]
pub async fn test_charge(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<web::Json<TestCharge>> {
    Ok(web::Json(
        test_provider(&state)?.charge(payment_id(&id)?).await?,
    ))
}

/// A card entered on the test provider's page.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CardBody {
    /// `4242 4242 4242 4242` succeeds; `4000 0000 0000 0002` and
    /// `4000 0000 0000 9995` are declined.
    pub number: String,
}

#[utoipa::path(post, path = "/api/v1/test-provider/payments/{id}/card", tag = "test-provider",
    params(("id" = Uuid, Path, description = "the payment's id at the provider")), request_body = CardBody,
    responses((status = 200, body = TestCharge, description = "decided; the shop hears of it by webhook"),
              (status = 400, description = "bad_request"),
              (status = 404, description = "not_found"),
              (status = 409, description = "payment_not_open: decided already"),
              (status = 422, description = "validation_failed: not a test card number")))]
pub async fn test_card(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Json<CardBody>,
) -> ApiResult<web::Json<TestCharge>> {
    let id = payment_id(&id)?;
    let number = body.0.number;
    let outcome = card_outcome(&number).ok_or_else(|| {
        ApiError::field(
            "number",
            "not a test card: use 4242 4242 4242 4242 (succeeds) or 4000 0000 0000 0002 (declined)",
        )
    })?;
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let last4 = &digits[digits.len().saturating_sub(4)..];
    Ok(web::Json(
        test_provider(&state)?
            .decide(id, outcome, Some(last4))
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/test-provider/payments/{id}/succeed", tag = "test-provider",
    params(("id" = Uuid, Path, description = "the payment's id at the provider")),
    responses((status = 200, body = TestCharge, description = "the charge succeeded; the shop hears of it by webhook"),
              (status = 400, description = "bad_request"),
              (status = 404, description = "not_found"),
              (status = 409, description = "payment_not_open: decided already")))]
pub async fn test_succeed(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<web::Json<TestCharge>> {
    Ok(web::Json(
        test_provider(&state)?
            .decide(payment_id(&id)?, Outcome::Succeed, None)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/test-provider/payments/{id}/fail", tag = "test-provider",
    params(("id" = Uuid, Path, description = "the payment's id at the provider")),
    responses((status = 200, body = TestCharge, description = "the charge failed; the shop hears of it by webhook"),
              (status = 400, description = "bad_request"),
              (status = 404, description = "not_found"),
              (status = 409, description = "payment_not_open: decided already")))]
pub async fn test_fail(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<web::Json<TestCharge>> {
    Ok(web::Json(
        test_provider(&state)?
            .decide(payment_id(&id)?, Outcome::Fail, None)
            .await?,
    ))
}
