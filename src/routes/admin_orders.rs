//! `/admin/sales/{id}/orders`: a sale's orders as its admin sees them, to
//! find one to cancel.

use actix_web::web;
use serde::Deserialize;

use super::{at, Items, Page};
use crate::auth::{AuthUser, Role};
use crate::db::orders::{self, SaleOrder};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/admin/sales/{id}/orders").get(list));
}

/// The statuses an order can be in.
const STATUSES: [&str; 7] = [
    "pending_payment",
    "paid",
    "confirmed",
    "payment_failed",
    "expired",
    "cancelled",
    "refunded",
];

#[derive(Deserialize, utoipa::IntoParams)]
pub struct OrdersQuery {
    /// Only orders in this status: `pending_payment`, `paid`, `confirmed`,
    /// `payment_failed`, `expired`, `cancelled` or `refunded`; all when left out.
    pub status: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// 0 to 100000, default 0.
    #[param(minimum = 0, maximum = 100000)]
    pub offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/sales/{id}/orders", tag = "admin", params(OrdersQuery), security(("bearer" = [])),
    responses((status = 200, body = Items<SaleOrder>, description = "the sale's orders, newest first, with their buyers"),
              (status = 403, description = "forbidden"), (status = 404, description = "not_found: no such sale"),
              (status = 422, description = "validation_failed")))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    q: web::Query<OrdersQuery>,
) -> ApiResult<web::Json<Items<SaleOrder>>> {
    user.require(&[Role::Admin])?;
    let status = q.status.as_deref();
    if status.is_some_and(|s| !STATUSES.contains(&s)) {
        return Err(ApiError::field(
            "status",
            "must be pending_payment, paid, confirmed, payment_failed, expired, cancelled or refunded",
        ));
    }
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .parse()?;
    Ok(web::Json(Items {
        items: orders::list_for_sale(&state.pool, *id, status, limit, offset).await?,
    }))
}
