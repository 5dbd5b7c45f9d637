//! Orders: what a shopper bought, and what a seller earned.
//!
//! An order is *live* while it holds its unit: `pending_payment` (a hold,
//! until `expires_at`), `paid`, or `confirmed` (a sale without a hold). It
//! stops holding it as `payment_failed`, `expired`, `cancelled` or
//! `refunded`. Revenue counts `paid` and `confirmed` only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;

use crate::db::Db;
use crate::error::ApiError;

/// An order as the API shows it: a sale's (one line, with its sale, product
/// and quantity at the top, as clients of sales know it) or the catalog's
/// (several lines, checked out from a cart; `sale_id`, `product_id` and
/// `unit_price_cents` are `null`, `quantity` counts every line's units).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub id: i64,
    /// Human-readable order number, `YYYY-MM-NNNNNN`.
    pub number: String,
    pub sale_id: Option<i64>,
    pub product_id: Option<i64>,
    pub user_id: i64,
    /// Units in the order, over all its lines.
    pub quantity: i32,
    pub unit_price_cents: Option<i64>,
    pub total_cents: i64,
    /// The one currency of every line.
    pub currency: String,
    /// What the order holds, by product.
    pub lines: Vec<OrderLine>,
    /// `pending_payment`, `paid`, `confirmed`, `payment_failed`, `expired`,
    /// `cancelled` or `refunded`.
    pub status: String,
    /// Database time of the purchase.
    pub created_at: DateTime<Utc>,
    /// When a hold runs out unpaid (by the database clock); `null` for an
    /// order confirmed at once.
    pub expires_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order stopped holding its unit.
    pub released_at: Option<DateTime<Utc>>,
}

/// One product's units in an order, at the price paid.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OrderLine {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub total_cents: i64,
}

/// The columns of [`Order`], for `select` and `returning` (on
/// `purchase_order` or a row set of its columns). A catalog order's lines
/// are read from `order_line`; a sale order's one line is its own columns
/// (made in Rust: the purchase path returns thousands of orders a second).
pub const COLUMNS: &str =
    "id, number, sale_id, product_id, user_id, quantity, unit_price_cents, total_cents, currency,
     case when sale_id is null
          then order_lines(id, sale_id, product_id, quantity, unit_price_cents, total_cents)
     end as lines,
     status, created_at, expires_at, paid_at, released_at";

impl<'r> sqlx::FromRow<'r, PgRow> for Order {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let sale_id: Option<i64> = row.try_get("sale_id")?;
        let product_id: Option<i64> = row.try_get("product_id")?;
        let quantity: i32 = row.try_get("quantity")?;
        let unit_price_cents: Option<i64> = row.try_get("unit_price_cents")?;
        let total_cents: i64 = row.try_get("total_cents")?;
        let lines = match (sale_id, product_id, unit_price_cents) {
            (Some(_), Some(product_id), Some(unit_price_cents)) => vec![OrderLine {
                product_id,
                quantity,
                unit_price_cents,
                total_cents,
            }],
            _ => {
                let lines: Option<Json<Vec<OrderLine>>> = row.try_get("lines")?;
                lines.map(|l| l.0).unwrap_or_default()
            }
        };
        Ok(Order {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            sale_id,
            product_id,
            user_id: row.try_get("user_id")?,
            quantity,
            unit_price_cents,
            total_cents,
            currency: row.try_get("currency")?,
            lines,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            paid_at: row.try_get("paid_at")?,
            released_at: row.try_get("released_at")?,
        })
    }
}

/// The statuses of a live order (one that holds its units), as a SQL list.
pub const LIVE: &str = "('pending_payment', 'paid', 'confirmed')";

/// The statuses that count as revenue, as a SQL list.
pub const EARNING: &str = "('paid', 'confirmed')";

/// A user's orders, newest first.
pub async fn list_for_user(
    pool: &Db,
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
pub async fn get(pool: &Db, id: i64, user_id: i64, any_owner: bool) -> Result<Order, ApiError> {
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

/// The id and number of a shopper's live order in a sale, if any.
pub async fn live_order_of(
    pool: &Db,
    sale_id: i64,
    user_id: i64,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select id, number from purchase_order
          where sale_id = $1 and user_id = $2 and status in {LIVE}"
    ))
    .bind(sale_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// One product's line in a revenue report.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RevenueLine {
    pub product_id: i64,
    pub name: String,
    pub seller_id: i64,
    /// The currency of this line's revenue (the orders').
    pub currency: String,
    pub units: i64,
    pub revenue_cents: i64,
}

/// The first instant of the current UTC month by the database clock.
pub async fn current_month_start(pool: &Db) -> Result<DateTime<Utc>, ApiError> {
    Ok(sqlx::query_scalar(
        "select date_trunc('month', now() at time zone 'utc') at time zone 'utc'",
    )
    .fetch_one(pool)
    .await?)
}

/// Units and revenue per product and currency for the UTC month starting at
/// `month_start`, sale orders and catalog lines alike; only `seller_id`'s
/// products unless it is `None` (admins).
pub async fn revenue(
    pool: &Db,
    seller_id: Option<i64>,
    month_start: DateTime<Utc>,
) -> Result<Vec<RevenueLine>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "select p.id as product_id, p.name, p.seller_id, o.currency,
                coalesce(sum(o.quantity), 0)::bigint as units,
                coalesce(sum(o.total_cents), 0)::bigint as revenue_cents
           from product p
           join order_item o on o.product_id = p.id and o.status in {EARNING}
                and o.created_at >= $2 and o.created_at < $2 + interval '1 month'
          where $1::bigint is null or p.seller_id = $1
          group by p.id, o.currency
          order by revenue_cents desc, p.id, o.currency"
    ))
    .bind(seller_id)
    .bind(month_start)
    .fetch_all(pool)
    .await?)
}

/// Why an order stops holding its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Release {
    /// A hold ran out unpaid (only once its `expires_at` has passed).
    Expired,
    /// An admin cancelled it (pending or confirmed; a cancelled sale's holds).
    Cancelled,
    /// Its payment failed (only while pending, with a failed payment and no
    /// other).
    PaymentFailed,
    /// An admin cancelled it after it was paid: its payment is refunded.
    Refunded,
}

impl Release {
    /// The status the order ends in.
    pub fn status(self) -> &'static str {
        match self {
            Release::Expired => "expired",
            Release::Cancelled => "cancelled",
            Release::PaymentFailed => "payment_failed",
            Release::Refunded => "refunded",
        }
    }

    /// The email that tells the buyer (an `outbox.kind`).
    pub(crate) fn email(self) -> &'static str {
        match self {
            Release::Expired => "hold_expired",
            Release::Cancelled => "order_cancelled",
            Release::PaymentFailed => "payment_failed",
            Release::Refunded => "order_refunded",
        }
    }

    /// Which orders this release may end, as SQL on `o`.
    pub(crate) fn condition(self) -> &'static str {
        match self {
            Release::Expired => "o.status = 'pending_payment' and o.expires_at <= now()",
            Release::Cancelled => "o.status in ('pending_payment', 'confirmed')",
            Release::PaymentFailed => {
                "o.status = 'pending_payment'
                 and exists (select 1 from payment p where p.order_id = o.id and p.status = 'failed')
                 and not exists (select 1 from payment p
                                  where p.order_id = o.id and p.status <> 'failed')"
            }
            Release::Refunded => "o.status = 'paid'",
        }
    }
}

/// Which orders of a sale to release.
#[derive(Clone, Copy, Debug)]
pub enum Releasing<'a> {
    /// These orders, where the release applies to them (others are left as
    /// they are: already released, paid meanwhile, not yet due).
    Orders(&'a [i64]),
    /// Every pending hold of the sale (its cancellation).
    AllHolds,
}

/// An order that stopped holding its unit.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReleasedOrder {
    pub id: i64,
    pub user_id: i64,
    pub quantity: i32,
}

/// Ends orders of one sale and gives their units back, in one statement: the
/// status, `remaining` up and the product's `sell_count` down, and an
/// announcement that stock rose (sent on commit), and the email telling each
/// buyer, in the outbox with the release. A refunded order's payment turns
/// `refunding` in the same statement (the refund worker asks the provider
/// for the money back afterwards, outside every lock). The caller holds the sale's
/// row lock (`FOR UPDATE`), so the lock order stays sale, then orders, then
/// product, and the stock invariant holds at every commit. Returns what was
/// released and the remaining stock after it (`None` when nothing was).
pub async fn release(
    conn: &mut sqlx::PgConnection,
    sale_id: i64,
    which: Releasing<'_>,
    why: Release,
) -> Result<(Vec<ReleasedOrder>, Option<i64>), sqlx::Error> {
    let (filter, ids) = match which {
        Releasing::Orders(ids) => (
            format!("o.id = any($3) and o.sale_id = $1 and {}", why.condition()),
            Some(ids),
        ),
        Releasing::AllHolds => (
            "o.sale_id = $1 and o.status = 'pending_payment' and $3::bigint[] is null".to_string(),
            None,
        ),
    };
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        order: ReleasedOrder,
        remaining: i64,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "with rel as (
             update purchase_order o set status = $2, released_at = now()
              where {filter}
             returning o.id, o.user_id, o.quantity),
         s as (update sale set remaining = remaining + (select sum(quantity) from rel)
                where id = $1 and exists (select 1 from rel)
                returning product_id, remaining),
         p as (update product set sell_count = sell_count - (select sum(quantity) from rel)
                where id = (select product_id from s)),
         -- The buyer's email commits with the release.
         m as (insert into outbox (kind, user_id, order_id)
               select $4, user_id, id from rel),
         -- A paid order's money goes back: its payment is refunded.
         r as (update payment set status = 'refunding', refund_claimed_until = null
                where $5 and order_id in (select id from rel) and status = 'succeeded')
         select rel.id, rel.user_id, rel.quantity, s.remaining,
                (select {announce} from s) is null as announced
           from rel cross join s",
        announce = super::sales::released_announcement("$1", "s.remaining"),
    ))
    .bind(sale_id)
    .bind(why.status())
    .bind(ids)
    .bind(why.email())
    .bind(why == Release::Refunded)
    .fetch_all(conn)
    .await?;
    let remaining = rows.first().map(|r| r.remaining);
    Ok((rows.into_iter().map(|r| r.order).collect(), remaining))
}

/// An order in an admin's list of a sale's orders: the order and its buyer.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SaleOrder {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub order: Order,
    /// The buyer's username.
    pub username: String,
}

/// A sale's orders, newest first, only those in `status` when given;
/// `not_found` when there is no such sale.
pub async fn list_for_sale(
    pool: &Db,
    sale_id: i64,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<SaleOrder>, ApiError> {
    let exists: bool = sqlx::query_scalar("select exists (select 1 from sale where id = $1)")
        .bind(sale_id)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(ApiError::NotFound("no such sale"));
    }
    // The page is cut first, then its buyers are joined in.
    Ok(sqlx::query_as(&format!(
        "select o.*, u.username
           from (select {COLUMNS} from purchase_order
                  where sale_id = $1 and ($2::text is null or status = $2)
                  order by created_at desc, id desc limit $3 offset $4) o
           join app_user u on u.id = o.user_id
          order by o.created_at desc, o.id desc"
    ))
    .bind(sale_id)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}
