//! Payments: the shop's record of what was paid for an order, and the
//! transactions that settle a provider's report of it.
//!
//! A payment is `open` while the shopper may pay, then `succeeded` or
//! `failed` as the provider reports; a succeeded payment whose order is
//! refunded turns `refunding` and, once the provider gave the money back,
//! `refunded`. Invariants (see `migrations/0005_payments.sql`): every paid
//! order has exactly one succeeded payment, and every payment that succeeded
//! belongs to exactly one paid or refunded order. Each function below that
//! moves a payment to `succeeded` moves its order in the same transaction.
//! Lock order: sale, then order, then payment, as everywhere else.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::Db;

/// A payment as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: i64,
    /// The provider that takes the money (`test`).
    pub provider: String,
    /// `open`, `succeeded`, `failed`, `refunding` or `refunded`.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    /// Where the shopper pays: the provider's hosted page.
    pub redirect_url: String,
    pub created_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, order_id, provider, status, amount_cents, currency, redirect_url,
     created_at, succeeded_at, failed_at, refunded_at";

/// What decides whether an order can be paid.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Payable {
    pub status: String,
    /// Its hold has run out by the database clock (even if the sweeper has
    /// not released it yet).
    pub overdue: bool,
    pub total_cents: i64,
    pub currency: String,
}

/// The order `order_id` of `user_id`, as far as paying it goes; `None` when
/// there is none (or it is someone else's). With `lock`, the order row is
/// locked until the transaction ends.
pub async fn payable(
    conn: &mut PgConnection,
    order_id: i64,
    user_id: i64,
    lock: bool,
) -> Result<Option<Payable>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select o.status, coalesce(o.expires_at <= now(), false) as overdue, o.total_cents,
                o.currency
           from purchase_order o
          where o.id = $1 and o.user_id = $2
          {}",
        if lock { "for update of o" } else { "" }
    ))
    .bind(order_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// The order's payment that has not failed (at most one), if any.
pub async fn current_of(
    conn: &mut PgConnection,
    order_id: i64,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from payment where order_id = $1 and status <> 'failed'"
    ))
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

/// A payment to record, once its provider has opened the charge.
pub struct NewPayment<'a> {
    pub id: Uuid,
    pub order_id: i64,
    pub provider: &'a str,
    pub provider_ref: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub redirect_url: &'a str,
}

/// Records an open payment; `None` when the order has one already (the
/// partial unique index decides between simultaneous requests).
pub async fn insert(
    conn: &mut PgConnection,
    p: &NewPayment<'_>,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "insert into payment (id, order_id, provider, provider_ref, amount_cents, currency,
                              redirect_url)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (order_id) where status <> 'failed' do nothing
         returning {COLUMNS}"
    ))
    .bind(p.id)
    .bind(p.order_id)
    .bind(p.provider)
    .bind(p.provider_ref)
    .bind(p.amount_cents)
    .bind(p.currency)
    .bind(p.redirect_url)
    .fetch_optional(conn)
    .await
}

/// One payment, if `user_id` owns its order or `any_owner` is set.
pub async fn get(
    pool: &Db,
    id: Uuid,
    user_id: i64,
    any_owner: bool,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from payment
          where id = $1
            and ($3 or order_id in (select id from purchase_order where user_id = $2))"
    ))
    .bind(id)
    .bind(user_id)
    .bind(any_owner)
    .fetch_optional(pool)
    .await
}

/// The payments of an order, newest first.
pub async fn of_order(pool: &Db, order_id: i64) -> Result<Vec<Payment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from payment where order_id = $1 order by created_at desc"
    ))
    .bind(order_id)
    .fetch_all(pool)
    .await
}

/// Records a webhook event by id; `false` when it was handled before (a
/// replay), in which case the caller changes nothing. A simultaneous
/// delivery of the same event waits here until the first commits.
pub async fn record_event(
    conn: &mut PgConnection,
    event_id: &str,
    payment_id: Uuid,
    kind: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "insert into payment_event (id, payment_id, type) values ($1, $2, $3)
         on conflict (id) do nothing",
    )
    .bind(event_id)
    .bind(payment_id)
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A payment and its order, both locked (order first).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Settling {
    pub payment_status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub order_id: i64,
    pub order_status: String,
    /// `None` for a catalog order (its lines are in `order_line`).
    pub sale_id: Option<i64>,
    pub product_id: Option<i64>,
    pub user_id: i64,
    pub quantity: i32,
}

/// The payment's order and its sale (`None` for a catalog order), read
/// without a lock (a payment's order never moves).
pub async fn sale_of(
    conn: &mut PgConnection,
    payment_id: Uuid,
) -> Result<Option<(i64, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "select o.id, o.sale_id from payment p join purchase_order o on o.id = p.order_id
          where p.id = $1",
    )
    .bind(payment_id)
    .fetch_optional(conn)
    .await
}

/// Locks the order of `payment_id`, then the payment; `None` when there is no
/// such payment. The caller holds the sale's lock first if it will move
/// stock.
pub async fn lock(
    conn: &mut PgConnection,
    payment_id: Uuid,
) -> Result<Option<Settling>, sqlx::Error> {
    #[allow(clippy::type_complexity)]
    let order: Option<(i64, String, Option<i64>, Option<i64>, i64, i32)> = sqlx::query_as(
        "select id, status, sale_id, product_id, user_id, quantity from purchase_order
          where id = (select order_id from payment where id = $1)
          for update",
    )
    .bind(payment_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((order_id, order_status, sale_id, product_id, user_id, quantity)) = order else {
        return Ok(None);
    };
    let (payment_status, amount_cents, currency): (String, i64, String) = sqlx::query_as(
        "select status, amount_cents, currency from payment where id = $1 for update",
    )
    .bind(payment_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(Settling {
        payment_status,
        amount_cents,
        currency,
        order_id,
        order_status,
        sale_id,
        product_id,
        user_id,
        quantity,
    }))
}

/// The payment succeeded while its order still holds its unit: the order is
/// paid, and the buyer told.
pub async fn pay_held(
    conn: &mut PgConnection,
    payment_id: Uuid,
    s: &Settling,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with o as (update purchase_order set status = 'paid', paid_at = now()
                     where id = $2 and status in ('pending_payment', 'paid')),
              p as (update payment set status = 'succeeded', succeeded_at = now()
                     where id = $1)
         insert into outbox (kind, user_id, order_id) values ('payment_received', $3, $2)",
    )
    .bind(payment_id)
    .bind(s.order_id)
    .bind(s.user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A late payment (its order was released first) takes its units again: the
/// order is paid and back among the live ones, `remaining` goes down and
/// `sell_count` up, all in one statement. The caller holds the sale's lock
/// and has checked that the units are there and the buyer holds no other
/// live order in the sale. Every instance hears the new stock (and that its
/// holders changed).
pub async fn retake(
    conn: &mut PgConnection,
    payment_id: Uuid,
    s: &Settling,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "with o as (update purchase_order
                       set status = 'paid', paid_at = now(), released_at = null
                     where id = $2),
              sa as (update sale set remaining = remaining - $4 where id = $5
                     returning remaining),
              pr as (update product set sell_count = sell_count + $4 where id = $6),
              p as (update payment set status = 'succeeded', succeeded_at = now()
                     where id = $1),
              m as (insert into outbox (kind, user_id, order_id)
                    values ('payment_received', $3, $2))
         select {announce} from sa",
        announce = super::sales::released_announcement("$5", "sa.remaining"),
    ))
    .bind(payment_id)
    .bind(s.order_id)
    .bind(s.user_id)
    .bind(s.quantity)
    .bind(s.sale_id)
    .bind(s.product_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A late payment that cannot take its units again: the money goes back.
/// The order ends `refunded` (it holds nothing already), the payment turns
/// `refunding` for the refund worker, and the buyer is told.
pub async fn refund_late(
    conn: &mut PgConnection,
    payment_id: Uuid,
    s: &Settling,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with o as (update purchase_order set status = 'refunded' where id = $2),
              p as (update payment set status = 'refunding', succeeded_at = now(),
                           refund_claimed_until = null
                     where id = $1)
         insert into outbox (kind, user_id, order_id) values ('order_refunded', $3, $2)",
    )
    .bind(payment_id)
    .bind(s.order_id)
    .bind(s.user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The payment failed; the order's release (which emails the buyer) follows
/// through the purchase engine.
pub async fn fail(conn: &mut PgConnection, payment_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("update payment set status = 'failed', failed_at = now() where id = $1")
        .bind(payment_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks the sale row (first, before the order and payment): its stock and
/// whether it is cancelled. `None` when there is no such sale.
pub async fn lock_sale(
    conn: &mut PgConnection,
    sale_id: i64,
) -> Result<Option<(i64, bool)>, sqlx::Error> {
    sqlx::query_as("select remaining, cancelled_at is not null from sale where id = $1 for update")
        .bind(sale_id)
        .fetch_optional(conn)
        .await
}

/// Whether the buyer holds a live order in the sale other than `order_id`.
pub async fn holds_another(conn: &mut PgConnection, s: &Settling) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "select exists (select 1 from purchase_order
                         where sale_id = $1 and user_id = $2 and id <> $3
                           and status in {live})",
        live = super::orders::LIVE
    ))
    .bind(s.sale_id)
    .bind(s.user_id)
    .bind(s.order_id)
    .fetch_one(conn)
    .await
}

/// Pending orders whose payment failed within the last hour and that were not
/// released (the process stopped between the two), per sale. A hold lasts at
/// most an hour, so an older failure's hold has run out and is swept anyway.
/// Catalog orders come under the sale `None`.
pub async fn failed_unreleased(pool: &Db) -> Result<Vec<(Option<i64>, Vec<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "select o.sale_id, array_agg(o.id order by o.id)
           from payment p join purchase_order o on o.id = p.order_id
          where p.status = 'failed' and p.failed_at > now() - interval '1 hour'
            and o.status = 'pending_payment'
          group by o.sale_id",
    )
    .fetch_all(pool)
    .await
}

/// A refund to ask the provider for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Refunding {
    pub id: Uuid,
    pub provider_ref: String,
    pub amount_cents: i64,
    pub currency: String,
}

/// Claims up to `limit` refunds that no worker holds, for `lease_secs`.
pub async fn claim_refunds(
    pool: &Db,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<Refunding>, sqlx::Error> {
    sqlx::query_as(
        "update payment p
            set refund_claimed_until = now() + make_interval(secs => $2),
                refund_attempts = p.refund_attempts + 1
           from (select id from payment
                  where status = 'refunding'
                    and (refund_claimed_until is null or refund_claimed_until <= now())
                  order by id limit $1
                  for update skip locked) due
          where p.id = due.id
      returning p.id, p.provider_ref, p.amount_cents, p.currency",
    )
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(pool)
    .await
}

/// The provider gave the money back.
pub async fn refunded(pool: &Db, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update payment set status = 'refunded', refunded_at = now(), refund_error = null
          where id = $1 and status = 'refunding'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The provider refused or could not be reached: tried again once the claim
/// runs out.
pub async fn refund_failed(pool: &Db, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update payment set refund_error = $2 where id = $1")
        .bind(id)
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}
