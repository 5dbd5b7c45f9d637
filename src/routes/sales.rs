//! `/sales`, the purchase route and the admin's live stats.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{at, idempotent, Items, Page};
use crate::auth::{AuthUser, Role, Shopper};
use crate::config::PurchaseMode;
use crate::db::orders::Order;
use crate::db::sales::{self, NewSale, Room, Sale, SaleChange, SaleStats, SaleStatus, StateFilter};
use crate::domain::{self, Problems, Quantity, MAX_QUANTITY};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, OptionalJson};
use crate::purchase::PurchaseRequest;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    // One sale's routes share one scope: its `{id}` costs one pattern match
    // for all of them, and the paths after it are compared as plain text.
    cfg.service(at("/sales").get(list).post(create))
        .service(
            web::scope("/sales/{id}")
                .service(at("").get(get).patch(update))
                .service(at("/status").get(status))
                .service(at("/events").get(events))
                .service(at("/purchase").post(purchase))
                .configure(super::queue::config),
        )
        .service(at("/admin/sales/{id}/stats").get(stats));
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `upcoming`, `active`, `ended` or `cancelled`; all when left out.
    pub state: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 100000)]
    pub offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/sales", tag = "sales", params(ListQuery),
    responses((status = 200, body = Items<Sale>), (status = 422, description = "validation_failed")))]
pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> ApiResult<web::Json<Items<Sale>>> {
    let filter = match q.state.as_deref() {
        None => StateFilter::All,
        Some("upcoming") => StateFilter::Upcoming,
        Some("active") => StateFilter::Active,
        Some("ended") => StateFilter::Ended,
        Some("cancelled") => StateFilter::Cancelled,
        Some(_) => {
            return Err(ApiError::field(
                "state",
                "must be upcoming, active, ended or cancelled",
            ))
        }
    };
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .parse()?;
    Ok(web::Json(Items {
        items: sales::list(&state.pool, filter, limit, offset).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/sales/{id}", tag = "sales",
    responses((status = 200, body = Sale), (status = 404, description = "not_found")))]
pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> ApiResult<web::Json<Sale>> {
    Ok(web::Json(sales::get(&state.pool, *id).await?))
}

#[utoipa::path(get, path = "/api/v1/sales/{id}/status", tag = "sales",
    responses((status = 200, body = SaleStatus), (status = 404, description = "not_found")))]
pub async fn status(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> ApiResult<web::Json<SaleStatus>> {
    match state.engine.mode() {
        // Served from memory: the storm of pollers never reaches the database.
        PurchaseMode::Combined => {
            let live = state.board.get(*id).await?;
            Ok(web::Json(state.board.status(&live)))
        }
        PurchaseMode::PerPurchase => Ok(web::Json(sales::status(&state.pool, *id).await?)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateSale {
    pub product_id: i64,
    /// RFC 3339.
    pub starts_at: DateTime<Utc>,
    /// RFC 3339, after `starts_at`.
    pub ends_at: DateTime<Utc>,
    pub stock: i64,
    /// Defaults to the product's price.
    pub price_cents: Option<i64>,
    /// Default 1.
    pub per_user_limit: Option<i64>,
    /// Seconds a winner's unit is held for payment, 0 to 3600; default 600.
    /// 0: orders are confirmed at once, without a payment step.
    pub hold_secs: Option<i64>,
    /// Default false: sell only to shoppers admitted from the sale's queue.
    pub waiting_room: Option<bool>,
    /// Places admitted per second, 1 to 100000; default 100.
    pub admit_per_sec: Option<i64>,
    /// Seconds an admitted shopper has to buy, 10 to 3600; default 120.
    pub admission_secs: Option<i64>,
    /// Default false: sell only to shoppers with a verified email address.
    pub verified_only: Option<bool>,
}

/// A sale's hold when its creator names none: ten minutes to pay.
pub const DEFAULT_HOLD_SECS: i64 = 600;

fn per_user_limit(n: i64) -> Result<i32, String> {
    if (1..=MAX_QUANTITY).contains(&n) {
        Ok(n as i32)
    } else {
        Err(format!("must be between 1 and {MAX_QUANTITY}"))
    }
}

/// The longest hold, in seconds.
const MAX_HOLD_SECS: i64 = 3600;

fn hold_secs(n: i64) -> Result<i32, String> {
    if (0..=MAX_HOLD_SECS).contains(&n) {
        Ok(n as i32)
    } else {
        Err(format!("must be between 0 and {MAX_HOLD_SECS}"))
    }
}

fn admit_per_sec(n: i64) -> Result<i32, String> {
    if (1..=100_000).contains(&n) {
        Ok(n as i32)
    } else {
        Err("must be between 1 and 100000".into())
    }
}

fn admission_secs(n: i64) -> Result<i32, String> {
    if (10..=3600).contains(&n) {
        Ok(n as i32)
    } else {
        Err("must be between 10 and 3600".into())
    }
}

#[utoipa::path(post, path = "/api/v1/sales", tag = "sales", request_body = CreateSale, security(("bearer" = [])),
    responses((status = 201, body = Sale), (status = 403, description = "forbidden"),
              (status = 422, description = "validation_failed")))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateSale>,
) -> ApiResult<HttpResponse> {
    user.require(&[Role::Admin])?;
    let b = body.0;
    let mut p = Problems::default();
    let stock = p.check("stock", domain::stock(b.stock));
    let price_cents = b
        .price_cents
        .and_then(|c| p.check("price_cents", domain::price_cents(c)));
    let limit = p.check(
        "per_user_limit",
        per_user_limit(b.per_user_limit.unwrap_or(1)),
    );
    let hold = p.check(
        "hold_secs",
        hold_secs(b.hold_secs.unwrap_or(DEFAULT_HOLD_SECS)),
    );
    let rate = p.check(
        "admit_per_sec",
        admit_per_sec(b.admit_per_sec.unwrap_or(100)),
    );
    let admission = p.check(
        "admission_secs",
        admission_secs(b.admission_secs.unwrap_or(120)),
    );
    let window = (
        p.check("starts_at", domain::instant(b.starts_at)),
        p.check("ends_at", domain::instant(b.ends_at)),
    );
    if window.0.is_some() && window.1.is_some() && b.ends_at <= b.starts_at {
        p.add("ends_at", "must be after starts_at");
    }
    p.finish()?;
    let (Some(stock), Some(per_user_limit), Some(hold_secs), Some(rate), Some(admission)) =
        (stock, limit, hold, rate, admission)
    else {
        unreachable!("finish() returned Ok, so every field parsed");
    };
    let sale = sales::create(
        &state.pool,
        NewSale {
            product_id: b.product_id,
            starts_at: b.starts_at,
            ends_at: b.ends_at,
            stock,
            price_cents,
            per_user_limit,
            hold_secs,
            room: Room {
                waiting_room: b.waiting_room.unwrap_or(false),
                admit_per_sec: rate,
                admission_secs: admission,
                verified_only: b.verified_only.unwrap_or(false),
            },
            created_by: user.id,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(sale))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSale {
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub stock: Option<i64>,
    pub price_cents: Option<i64>,
    pub per_user_limit: Option<i64>,
    pub hold_secs: Option<i64>,
    pub waiting_room: Option<bool>,
    /// May change during the sale too (to admit faster or slower).
    pub admit_per_sec: Option<i64>,
    pub admission_secs: Option<i64>,
    pub verified_only: Option<bool>,
    /// `true` cancels the sale (it cannot be un-cancelled); its unpaid holds
    /// are cancelled with it.
    pub cancelled: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/sales/{id}", tag = "sales", request_body = UpdateSale, security(("bearer" = [])),
    responses((status = 200, body = Sale), (status = 403, description = "forbidden"), (status = 404, description = "not_found"),
              (status = 409, description = "sale_already_started, sale_cancelled, sale_ended"),
              (status = 422, description = "validation_failed")))]
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    body: Json<UpdateSale>,
) -> ApiResult<web::Json<Sale>> {
    user.require(&[Role::Admin])?;
    let b = body.0;
    let mut p = Problems::default();
    if b.cancelled == Some(false) {
        p.add(
            "cancelled",
            "a cancelled sale cannot be reopened; only `true` is accepted",
        );
    }
    let change = SaleChange {
        starts_at: b
            .starts_at
            .and_then(|t| p.check("starts_at", domain::instant(t))),
        ends_at: b
            .ends_at
            .and_then(|t| p.check("ends_at", domain::instant(t))),
        stock: b.stock.and_then(|s| p.check("stock", domain::stock(s))),
        price_cents: b
            .price_cents
            .and_then(|c| p.check("price_cents", domain::price_cents(c))),
        per_user_limit: b
            .per_user_limit
            .and_then(|l| p.check("per_user_limit", per_user_limit(l))),
        hold_secs: b.hold_secs.and_then(|h| p.check("hold_secs", hold_secs(h))),
        waiting_room: b.waiting_room,
        admit_per_sec: b
            .admit_per_sec
            .and_then(|n| p.check("admit_per_sec", admit_per_sec(n))),
        admission_secs: b
            .admission_secs
            .and_then(|n| p.check("admission_secs", admission_secs(n))),
        verified_only: b.verified_only,
        cancel: b.cancelled == Some(true),
    };
    p.finish()?;
    let sale = sales::update(&state.pool, *id, change).await?;
    // This instance reloads now; the others when the announcement arrives.
    state.board.reload(*id).await;
    Ok(web::Json(sale))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PurchaseBody {
    /// Default 1; at most the sale's `per_user_limit`.
    pub quantity: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/sales/{id}/purchase", tag = "sales", request_body(content = PurchaseBody, description = "optional"),
    security(("bearer" = [])),
    responses((status = 201, body = Order),
              (status = 403, description = "email_not_verified: this shop or sale sells only to confirmed addresses; not_admitted: a waiting-room sale sells only on an admitted, unexpired, unused ticket"),
              (status = 404, description = "not_found"),
              (status = 409, description = "sale_not_started, sale_ended, sale_cancelled, sold_out, already_purchased (with `details.order_id`, `details.order_number`), request_in_progress"),
              (status = 422, description = "validation_failed, quantity_exceeds_limit, idempotency_key_reused"),
              (status = 429, description = "rate_limited"),
              (status = 503, description = "busy: retry after Retry-After")),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a retry with the same key gets the first answer again")))]
pub async fn purchase(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: Shopper,
    id: web::Path<i64>,
    body: OptionalJson<PurchaseBody>,
) -> ApiResult<HttpResponse> {
    state.check_purchase_rate(crate::extract::client_ip(&req), user.id)?;
    let quantity = body.0.and_then(|b| b.quantity).unwrap_or(1);
    let quantity = Quantity::parse(quantity).map_err(|e| ApiError::field("quantity", e))?;
    let purchase = PurchaseRequest {
        sale_id: *id,
        user_id: user.id,
        quantity,
    };
    let buy = async {
        let result = state.engine.purchase(purchase).await;
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "created");
        state.metrics.purchases.with_label_values(&[outcome]).inc();
        let order = serde_json::to_value(result?).map_err(anyhow::Error::from)?;
        Ok((StatusCode::CREATED, order))
    };
    let request = serde_json::json!({ "quantity": quantity.get() });
    idempotent::answer(&state, &req, user.id, &request, buy).await
}

#[utoipa::path(get, path = "/api/v1/admin/sales/{id}/stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SaleStats), (status = 403, description = "forbidden"), (status = 404, description = "not_found")))]
pub async fn stats(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> ApiResult<web::Json<SaleStats>> {
    user.require(&[Role::Admin])?;
    Ok(web::Json(sales::stats(&state.pool, *id).await?))
}

#[utoipa::path(get, path = "/api/v1/sales/{id}/events", tag = "sales",
    responses((status = 200, description = "text/event-stream: `event: status` with the same JSON as /status, pushed on change (at most every 250 ms), at each window edge, and every 15 s"),
              (status = 404, description = "not_found")))]
pub async fn events(state: web::Data<AppState>, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    let live = state.board.get(*id).await?;
    let frames = crate::live::status_events(state.board.clone(), live, state.closing.subscribe());
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(frames.map(|f| Ok::<_, actix_web::Error>(web::Bytes::from(f)))))
}
