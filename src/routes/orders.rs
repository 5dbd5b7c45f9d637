//! `/orders`, the admin's order cancel, and `/seller/revenue`.

use actix_web::web;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{at, Items, Page};
use crate::auth::{AuthUser, Role};
use crate::db::orders::{self, Order, RevenueLine};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/orders").get(list))
        .service(at("/orders/{id}").get(get))
        .service(at("/admin/orders/{id}/cancel").post(cancel))
        .service(at("/seller/revenue").get(revenue));
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Items<Order>), (status = 401, description = "unauthorized")))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<Page>,
) -> ApiResult<web::Json<Items<Order>>> {
    let (limit, offset) = q.parse()?;
    Ok(web::Json(Items {
        items: orders::list_for_user(&state.pool, user.id, limit, offset).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    responses((status = 200, body = Order), (status = 404, description = "not_found (also someone else's order)")))]
pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> ApiResult<web::Json<Order>> {
    Ok(web::Json(
        orders::get(&state.pool, *id, user.id, user.is_admin()).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/cancel", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Order, description = "the order, now `cancelled`; its units are back in the stock"),
              (status = 403, description = "forbidden"), (status = 404, description = "not_found"),
              (status = 409, description = "order_not_cancellable: it is paid, or already ended otherwise"),
              (status = 503, description = "busy: retry after Retry-After")))]
pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> ApiResult<web::Json<Order>> {
    user.require(&[Role::Admin])?;
    Ok(web::Json(state.engine.cancel(*id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RevenueQuery {
    /// `YYYY-MM` (UTC); the current month when left out.
    pub month: Option<String>,
}

/// A month's revenue, per product and currency.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Revenue {
    pub month: String,
    pub items: Vec<RevenueLine>,
    pub total_units: i64,
    /// The month's revenue when every line is in one currency; `null` when
    /// there are several (money in two currencies is never added up: see
    /// `totals`).
    pub total_revenue_cents: Option<i64>,
    /// Revenue per currency, by currency code.
    pub totals: Vec<CurrencyTotal>,
}

/// Units and revenue in one currency.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CurrencyTotal {
    pub currency: String,
    pub units: i64,
    pub revenue_cents: i64,
}

#[utoipa::path(get, path = "/api/v1/seller/revenue", tag = "orders", params(RevenueQuery), security(("bearer" = [])),
    responses((status = 200, body = Revenue), (status = 403, description = "forbidden"), (status = 422, description = "validation_failed")))]
pub async fn revenue(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<RevenueQuery>,
) -> ApiResult<web::Json<Revenue>> {
    user.require(&[Role::Seller, Role::Admin])?;
    let start = match q.month.as_deref() {
        // The current month by the database clock, like every other "now".
        None => orders::current_month_start(&state.pool).await?,
        Some(m) => parse_month(m)
            .ok_or_else(|| ApiError::field("month", "must be YYYY-MM"))?
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc(),
    };
    let seller = (!user.is_admin()).then_some(user.id);
    // A month's revenue tolerates the replica's lag.
    let items = orders::revenue(state.reads(), seller, start).await?;
    let mut totals: Vec<CurrencyTotal> = Vec::new();
    for line in &items {
        match totals.iter_mut().find(|t| t.currency == line.currency) {
            Some(t) => {
                t.units += line.units;
                t.revenue_cents += line.revenue_cents;
            }
            None => totals.push(CurrencyTotal {
                currency: line.currency.clone(),
                units: line.units,
                revenue_cents: line.revenue_cents,
            }),
        }
    }
    totals.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(web::Json(Revenue {
        month: start.format("%Y-%m").to_string(),
        total_units: items.iter().map(|i| i.units).sum(),
        total_revenue_cents: match totals.as_slice() {
            [] => Some(0),
            [one] => Some(one.revenue_cents),
            _ => None,
        },
        totals,
        items,
    }))
}

fn parse_month(m: &str) -> Option<NaiveDate> {
    let (y, mo) = m.split_once('-')?;
    if y.len() != 4 || mo.len() != 2 {
        return None;
    }
    let y: i32 = y.parse().ok()?;
    let mo: u32 = mo.parse().ok()?;
    if !(1970..=9999).contains(&y) {
        return None;
    }
    NaiveDate::from_ymd_opt(y, mo, 1)
}
