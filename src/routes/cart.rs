//! `/cart`: the shopper's cart, and its checkout into one catalog order.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{at, idempotent};
use crate::auth::AuthUser;
use crate::db::cart::{self, Cart};
use crate::db::catalog;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/cart").get(get))
        .service(at("/cart/items/{product_id}").put(put).delete(remove))
        .service(at("/cart/checkout").post(checkout));
}

#[utoipa::path(get, path = "/api/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = Cart), (status = 401, description = "unauthorized")))]
pub async fn get(state: web::Data<AppState>, user: AuthUser) -> ApiResult<web::Json<Cart>> {
    Ok(web::Json(cart::get(&state.pool, user.id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PutItem {
    /// 1 to 100 copies.
    pub quantity: i64,
}

#[utoipa::path(put, path = "/api/v1/cart/items/{product_id}", tag = "cart", request_body = PutItem,
    security(("bearer" = [])),
    responses((status = 200, body = Cart, description = "the cart, with this line set to the quantity"),
              (status = 404, description = "not_found: no such product"),
              (status = 422, description = "validation_failed: quantity out of 1..100, or a 51st product")))]
pub async fn put(
    state: web::Data<AppState>,
    user: AuthUser,
    product_id: web::Path<i64>,
    body: Json<PutItem>,
) -> ApiResult<web::Json<Cart>> {
    let quantity = i32::try_from(body.0.quantity)
        .ok()
        .filter(|q| (1..=100).contains(q))
        .ok_or_else(|| ApiError::field("quantity", "must be between 1 and 100"))?;
    cart::put(&state.pool, user.id, *product_id, quantity).await?;
    Ok(web::Json(cart::get(&state.pool, user.id).await?))
}

#[utoipa::path(delete, path = "/api/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = Cart, description = "the cart without this product (also when it was not in it)")))]
pub async fn remove(
    state: web::Data<AppState>,
    user: AuthUser,
    product_id: web::Path<i64>,
) -> ApiResult<web::Json<Cart>> {
    cart::remove(&state.pool, user.id, *product_id).await?;
    Ok(web::Json(cart::get(&state.pool, user.id).await?))
}

#[utoipa::path(post, path = "/api/v1/cart/checkout", tag = "cart", security(("bearer" = [])),
    responses((status = 201, body = crate::db::orders::Order, description = "one order holding every line, `pending_payment` until `expires_at`; the cart is empty"),
              (status = 409, description = "out_of_stock (`details.lines`: each short line, nothing held), cart_empty, request_in_progress"),
              (status = 422, description = "validation_failed: the cart holds two currencies; idempotency_key_reused"),
              (status = 429, description = "rate_limited (the purchase limits, per user and, when configured, per client IP)"),
              (status = 503, description = "busy: retry after Retry-After")),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a retry with the same key gets the first answer again")))]
pub async fn checkout(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
) -> ApiResult<HttpResponse> {
    state.check_purchase_rate(crate::extract::client_ip(&req), user.id)?;
    let work = async {
        let order = catalog::checkout(&state.pool, user.id, state.settings.cart_hold_secs).await?;
        let body = serde_json::to_value(order).map_err(anyhow::Error::from)?;
        Ok((StatusCode::CREATED, body))
    };
    idempotent::answer(&state, &req, user.id, &serde_json::Value::Null, work).await
}
