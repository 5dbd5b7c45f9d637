//! Flash sales: scheduling, rescheduling, cancelling, and reading their state
//! by the database clock.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::orders::{EARNING, LIVE};
use super::products::Product;
use crate::db::Db;
use crate::error::ApiError;

mod channel;

pub use channel::{
    admitted_announcement, announce_changed, released_announcement, remaining_announcement,
    Announcement, CHANNEL,
};

/// Where a sale stands, by the database clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Upcoming,
    Active,
    SoldOut,
    Ended,
    Cancelled,
}

impl SaleState {
    fn parse(s: &str) -> SaleState {
        match s {
            "upcoming" => SaleState::Upcoming,
            "active" => SaleState::Active,
            "sold_out" => SaleState::SoldOut,
            "ended" => SaleState::Ended,
            _ => SaleState::Cancelled,
        }
    }
}

/// A sale as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Sale {
    pub id: i64,
    pub product_id: i64,
    pub product: Product,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub stock: i64,
    pub remaining: i64,
    pub price_cents: i64,
    pub per_user_limit: i32,
    /// Seconds a winner has to pay; 0: orders are confirmed at once.
    pub hold_secs: i32,
    /// Sells only to shoppers admitted from its queue (`/sales/{id}/queue`).
    pub waiting_room: bool,
    /// Places admitted per second from the start.
    pub admit_per_sec: i32,
    /// Seconds an admitted shopper has to buy.
    pub admission_secs: i32,
    /// Sells only to shoppers with a verified email address.
    pub verified_only: bool,
    pub state: SaleState,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The database clock when this answer was made: countdowns run from it.
    pub server_time: DateTime<Utc>,
}

/// The cheap status a storm of shoppers polls.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SaleStatus {
    #[sqlx(try_from = "String")]
    pub state: SaleState,
    pub remaining: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub server_time: DateTime<Utc>,
    /// With a waiting room: the last place admitted from the queue (0 before
    /// the first); null for a sale without one.
    pub admitted_through: Option<i32>,
    /// With a waiting room: places admitted per second.
    pub admit_per_sec: Option<i32>,
}

// `From` gives sqlx's `try_from = "String"` the infallible `TryFrom` it needs.
impl From<String> for SaleState {
    fn from(s: String) -> Self {
        SaleState::parse(&s)
    }
}

/// Which sales to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    All,
    Upcoming,
    Active,
    Ended,
    Cancelled,
}

/// A validated new sale.
pub struct NewSale {
    pub product_id: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub stock: i64,
    pub price_cents: Option<i64>,
    pub per_user_limit: i32,
    pub hold_secs: i32,
    pub room: Room,
    pub created_by: i64,
}

/// A sale's admission settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    pub waiting_room: bool,
    pub admit_per_sec: i32,
    pub admission_secs: i32,
    pub verified_only: bool,
}

/// A validated change to a sale.
#[derive(Default)]
pub struct SaleChange {
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub stock: Option<i64>,
    pub price_cents: Option<i64>,
    pub per_user_limit: Option<i32>,
    pub hold_secs: Option<i32>,
    pub waiting_room: Option<bool>,
    pub admit_per_sec: Option<i32>,
    pub admission_secs: Option<i32>,
    pub verified_only: Option<bool>,
    pub cancel: bool,
}

/// The state of sale `s` at the database's `now()`, as SQL.
pub const STATE_SQL: &str = "case when s.cancelled_at is not null then 'cancelled'
                                  when now() < s.starts_at then 'upcoming'
                                  when now() >= s.ends_at then 'ended'
                                  when s.remaining = 0 then 'sold_out'
                                  else 'active' end";

fn select_sql(filter: &str) -> String {
    format!(
        "select s.id, s.product_id, s.starts_at, s.ends_at, s.stock, s.remaining, s.price_cents,
                s.per_user_limit, s.hold_secs, s.waiting_room, s.admit_per_sec, s.admission_secs,
                s.verified_only, s.cancelled_at, {STATE_SQL} as state,
                now() as server_time,
                p.seller_id as p_seller_id, p.name as p_name, p.description as p_description,
                p.price_cents as p_price_cents, p.currency as p_currency,
                p.sell_count as p_sell_count, p.stock as p_stock, p.created_at as p_created_at
           from sale s join product p on p.id = s.product_id
          {filter}"
    )
}

#[derive(sqlx::FromRow)]
struct SaleRow {
    id: i64,
    product_id: i64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    stock: i64,
    remaining: i64,
    price_cents: i64,
    per_user_limit: i32,
    hold_secs: i32,
    waiting_room: bool,
    admit_per_sec: i32,
    admission_secs: i32,
    verified_only: bool,
    cancelled_at: Option<DateTime<Utc>>,
    state: String,
    server_time: DateTime<Utc>,
    p_seller_id: i64,
    p_name: String,
    p_description: String,
    p_price_cents: i64,
    p_currency: String,
    p_sell_count: i64,
    p_stock: i64,
    p_created_at: DateTime<Utc>,
}

impl From<SaleRow> for Sale {
    fn from(r: SaleRow) -> Sale {
        Sale {
            id: r.id,
            product_id: r.product_id,
            product: Product {
                id: r.product_id,
                seller_id: r.p_seller_id,
                name: r.p_name,
                description: r.p_description,
                price_cents: r.p_price_cents,
                currency: r.p_currency,
                sell_count: r.p_sell_count,
                stock: r.p_stock,
                created_at: r.p_created_at,
            },
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            stock: r.stock,
            remaining: r.remaining,
            price_cents: r.price_cents,
            per_user_limit: r.per_user_limit,
            hold_secs: r.hold_secs,
            waiting_room: r.waiting_room,
            admit_per_sec: r.admit_per_sec,
            admission_secs: r.admission_secs,
            verified_only: r.verified_only,
            state: SaleState::parse(&r.state),
            cancelled_at: r.cancelled_at,
            server_time: r.server_time,
        }
    }
}

/// One sale, or `not_found`.
pub async fn get(pool: &Db, id: i64) -> Result<Sale, ApiError> {
    let row: Option<SaleRow> = sqlx::query_as(&select_sql("where s.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(Sale::from)
        .ok_or(ApiError::NotFound("no such sale"))
}

/// Sales in a state, soonest first; `limit`/`offset` page through them.
pub async fn list(
    pool: &Db,
    filter: StateFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<Sale>, ApiError> {
    let cond = match filter {
        StateFilter::All => "true",
        StateFilter::Upcoming => "s.cancelled_at is null and now() < s.starts_at",
        StateFilter::Active => {
            "s.cancelled_at is null and now() >= s.starts_at and now() < s.ends_at"
        }
        StateFilter::Ended => "s.cancelled_at is null and now() >= s.ends_at",
        StateFilter::Cancelled => "s.cancelled_at is not null",
    };
    let rows: Vec<SaleRow> = sqlx::query_as(&select_sql(&format!(
        "where {cond} order by s.starts_at, s.id limit $1 offset $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Sale::from).collect())
}

/// The status of one sale.
pub async fn status(pool: &Db, id: i64) -> Result<SaleStatus, ApiError> {
    sqlx::query_as(&format!(
        "select {STATE_SQL} as state, s.remaining, s.starts_at, s.ends_at, now() as server_time,
                case when s.waiting_room then coalesce(q.admitted_through, 0) end as admitted_through,
                case when s.waiting_room then s.admit_per_sec end as admit_per_sec
           from sale s left join sale_queue q on q.sale_id = s.id where s.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("no such sale"))
}

/// Schedules a sale. The price defaults to the product's.
pub async fn create(pool: &Db, s: NewSale) -> Result<Sale, ApiError> {
    let id: Option<i64> = sqlx::query_scalar(
        "insert into sale (product_id, starts_at, ends_at, stock, remaining, price_cents,
                           per_user_limit, created_by, hold_secs,
                           waiting_room, admit_per_sec, admission_secs, verified_only)
         select p.id, $2, $3, $4, $4, coalesce($5, p.price_cents), $6, $7, $8, $9, $10, $11, $12
           from product p where p.id = $1
         returning id",
    )
    .bind(s.product_id)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(s.stock)
    .bind(s.price_cents)
    .bind(s.per_user_limit)
    .bind(s.created_by)
    .bind(s.hold_secs)
    .bind(s.room.waiting_room)
    .bind(s.room.admit_per_sec)
    .bind(s.room.admission_secs)
    .bind(s.room.verified_only)
    .fetch_optional(pool)
    .await?;
    let id = id.ok_or_else(|| ApiError::field("product_id", "no such product"))?;
    get(pool, id).await
}

/// Reschedules, restocks, reprices or cancels a sale. Window, stock, price,
/// limit, hold and admission settings may change only before the sale starts
/// (by the database clock), except `admit_per_sec`, which an admin may turn
/// up or down during the sale; a sale can be cancelled until it ends.
pub async fn update(pool: &Db, id: i64, c: SaleChange) -> Result<Sale, ApiError> {
    let mut tx = pool.begin().await?;
    #[derive(sqlx::FromRow)]
    struct Current {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        started: bool,
        ended: bool,
        cancelled: bool,
    }
    let cur: Current = sqlx::query_as(
        "select starts_at, ends_at, now() >= starts_at as started, now() >= ends_at as ended,
                cancelled_at is not null as cancelled
           from sale where id = $1 for update",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound("no such sale"))?;

    let changes_terms = c.starts_at.is_some()
        || c.ends_at.is_some()
        || c.stock.is_some()
        || c.price_cents.is_some()
        || c.per_user_limit.is_some()
        || c.hold_secs.is_some()
        || c.waiting_room.is_some()
        || c.admission_secs.is_some()
        || c.verified_only.is_some();
    if cur.cancelled {
        return Err(ApiError::SaleCancelled);
    }
    if changes_terms && cur.started {
        return Err(ApiError::SaleAlreadyStarted);
    }
    if c.admit_per_sec.is_some() && cur.ended {
        return Err(ApiError::SaleEnded);
    }
    if c.cancel && cur.ended {
        return Err(ApiError::SaleEnded);
    }
    let starts = c.starts_at.unwrap_or(cur.starts_at);
    let ends = c.ends_at.unwrap_or(cur.ends_at);
    if ends <= starts {
        return Err(ApiError::field("ends_at", "must be after starts_at"));
    }
    // Before the start no order exists, so a new stock is also the remaining.
    sqlx::query(
        "update sale set starts_at = $2, ends_at = $3,
                         stock = coalesce($4, stock), remaining = coalesce($4, remaining),
                         price_cents = coalesce($5, price_cents),
                         per_user_limit = coalesce($6, per_user_limit),
                         cancelled_at = case when $7 then now() else cancelled_at end,
                         hold_secs = coalesce($8, hold_secs),
                         waiting_room = coalesce($9, waiting_room),
                         admit_per_sec = coalesce($10, admit_per_sec),
                         admission_secs = coalesce($11, admission_secs),
                         verified_only = coalesce($12, verified_only)
          where id = $1",
    )
    .bind(id)
    .bind(starts)
    .bind(ends)
    .bind(c.stock)
    .bind(c.price_cents)
    .bind(c.per_user_limit)
    .bind(c.cancel)
    .bind(c.hold_secs)
    .bind(c.waiting_room)
    .bind(c.admit_per_sec)
    .bind(c.admission_secs)
    .bind(c.verified_only)
    .execute(&mut *tx)
    .await?;
    if c.cancel {
        // Its holds end with it; the sale lock is held, as every release needs.
        use super::orders::{release, Release, Releasing};
        release(&mut tx, id, Releasing::AllHolds, Release::Cancelled).await?;
    }
    // Every instance reloads the sale's live state once this commits.
    announce_changed(&mut *tx, id).await?;
    tx.commit().await?;
    get(pool, id).await
}

/// Live numbers of one sale, for admins.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SaleStats {
    pub sale_id: i64,
    pub stock: i64,
    /// Units in live orders (held, paid or confirmed): `stock - remaining`.
    pub sold: i64,
    /// Units held, waiting for payment.
    pub pending: i64,
    /// Units paid for.
    pub paid: i64,
    pub remaining: i64,
    /// Live orders.
    pub orders: i64,
    /// Distinct buyers with a live order.
    pub buyers: i64,
    /// Paid and confirmed orders.
    pub revenue_cents: i64,
}

/// Reads a sale's live numbers.
pub async fn stats(pool: &Db, id: i64) -> Result<SaleStats, ApiError> {
    sqlx::query_as(&format!(
        "select s.id as sale_id, s.stock, s.remaining,
                coalesce(sum(o.quantity), 0)::bigint as sold,
                coalesce(sum(o.quantity) filter (where o.status = 'pending_payment'), 0)::bigint
                    as pending,
                coalesce(sum(o.quantity) filter (where o.status = 'paid'), 0)::bigint as paid,
                count(o.id) as orders,
                count(distinct o.user_id) as buyers,
                coalesce(sum(o.total_cents) filter (where o.status in {EARNING}), 0)::bigint
                    as revenue_cents
           from sale s left join purchase_order o on o.sale_id = s.id and o.status in {LIVE}
          where s.id = $1
          group by s.id"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("no such sale"))
}
