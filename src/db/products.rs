//! Products (the books a seller lists) and their sell counts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::Db;
use crate::error::ApiError;

/// A product as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub seller_id: i64,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub currency: String,
    /// Units in live orders, of sales and of the catalog; moves in the same
    /// commit as the orders.
    pub sell_count: i64,
    /// Copies for regular (catalog) orders; 0 = sold only in flash sales.
    pub stock: i64,
    pub created_at: DateTime<Utc>,
}

/// How to order a product list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Newest,
    BestSelling,
}

/// A validated new product.
pub struct NewProduct {
    pub seller_id: i64,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
}

/// A validated change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProductChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    /// Sets the copies available for catalog orders now (held copies are
    /// not counted in it).
    pub stock: Option<i64>,
}

const COLUMNS: &str =
    "id, seller_id, name, description, price_cents, currency, sell_count, stock, created_at";

/// A page of products, only `seller`'s when given, only those matching the
/// full-text query `q` when given (name, description and the seller's name,
/// in PostgreSQL's web search syntax). Ordered by `sort`; a search without
/// one is ranked, best match first.
pub async fn list(
    pool: &Db,
    sort: Option<Sort>,
    q: Option<&str>,
    seller: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Product>, ApiError> {
    let order = match (sort, q) {
        (Some(Sort::BestSelling), _) => "sell_count desc, id desc",
        (Some(Sort::Newest), _) | (None, None) => "created_at desc, id desc",
        (None, Some(_)) => "ts_rank(search, websearch_to_tsquery('english', $4)) desc, id desc",
    };
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from product
          where ($3::bigint is null or seller_id = $3)
            and ($4::text is null or search @@ websearch_to_tsquery('english', $4))
          order by {order} limit $1 offset $2"
    ))
    .bind(limit)
    .bind(offset)
    .bind(seller)
    .bind(q)
    .fetch_all(pool)
    .await?)
}

/// One product, or `not_found`.
pub async fn get(pool: &Db, id: i64) -> Result<Product, ApiError> {
    sqlx::query_as(&format!("select {COLUMNS} from product where id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(ApiError::NotFound("no such product"))
}

/// Whether a user may sell (is a seller or an admin, and not disabled).
pub async fn can_sell(pool: &Db, user_id: i64) -> Result<bool, ApiError> {
    Ok(sqlx::query_scalar(
        "select exists (select 1 from app_user
                         where id = $1 and role in ('seller', 'admin') and disabled_at is null)",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?)
}

/// Lists a new product.
pub async fn create(pool: &Db, p: NewProduct) -> Result<Product, ApiError> {
    Ok(sqlx::query_as(&format!(
        "insert into product (seller_id, name, description, price_cents, currency, stock)
         values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
    ))
    .bind(p.seller_id)
    .bind(p.name)
    .bind(p.description)
    .bind(p.price_cents)
    .bind(p.currency)
    .bind(p.stock)
    .fetch_one(pool)
    .await?)
}

/// Applies a change to a product.
pub async fn update(pool: &Db, id: i64, c: ProductChange) -> Result<Product, ApiError> {
    sqlx::query_as(&format!(
        "update product set name = coalesce($2, name),
                            description = coalesce($3, description),
                            price_cents = coalesce($4, price_cents),
                            currency = coalesce($5, currency),
                            stock = coalesce($6, stock)
          where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(c.name)
    .bind(c.description)
    .bind(c.price_cents)
    .bind(c.currency)
    .bind(c.stock)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("no such product"))
}
