//! Orders: what a shopper bought, and what a seller earned.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::ApiError;

/// An order as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Order {
    pub id: i64,
    /// Human-readable order number, `YYYY-MM-NNNNNN`.
    pub number: String,
    pub sale_id: i64,
    pub product_id: i64,
    pub user_id: i64,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub total_cents: i64,
    pub status: String,
    /// Database time of the purchase.
    pub created_at: DateTime<Utc>,
}

/// The columns of [`Order`], for `select` and `returning`.
pub const COLUMNS: &str =
    "id, number, sale_id, product_id, user_id, quantity, unit_price_cents, total_cents, status, created_at";

/// A user's orders, newest first.
pub async fn list_for_user(
    pool: &PgPool,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<Order>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from purchase_order where user_id = $1
          order by created_at desc, id desc limit $2 offset $3"
    ))
    .bind(user_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

/// One order, if `user_id` owns it or `any_owner` (admins) is set. Someone
/// else's order is `not_found`, so ids do not leak.
pub async fn get(pool: &PgPool, id: i64, user_id: i64, any_owner: bool) -> Result<Order, ApiError> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from purchase_order where id = $1 and ($3 or user_id = $2)"
    ))
    .bind(id)
    .bind(user_id)
    .bind(any_owner)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("no such order"))
}

/// One product's line in a revenue report.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RevenueLine {
    pub product_id: i64,
    pub name: String,
    pub seller_id: i64,
    pub units: i64,
    pub revenue_cents: i64,
}

/// The first instant of the current UTC month by the database clock.
pub async fn current_month_start(pool: &PgPool) -> Result<DateTime<Utc>, ApiError> {
    Ok(sqlx::query_scalar(
        "select date_trunc('month', now() at time zone 'utc') at time zone 'utc'",
    )
    .fetch_one(pool)
    .await?)
}

/// Units and revenue per product for the UTC month starting at `month_start`;
/// only `seller_id`'s products unless it is `None` (admins).
pub async fn revenue(
    pool: &PgPool,
    seller_id: Option<i64>,
    month_start: DateTime<Utc>,
) -> Result<Vec<RevenueLine>, ApiError> {
    Ok(sqlx::query_as(
        "select p.id as product_id, p.name, p.seller_id,
                coalesce(sum(o.quantity), 0)::bigint as units,
                coalesce(sum(o.total_cents), 0)::bigint as revenue_cents
           from product p
           join purchase_order o on o.product_id = p.id and o.status = 'confirmed'
                and o.created_at >= $2 and o.created_at < $2 + interval '1 month'
          where $1::bigint is null or p.seller_id = $1
          group by p.id
          order by revenue_cents desc, p.id",
    )
    .bind(seller_id)
    .bind(month_start)
    .fetch_all(pool)
    .await?)
}
