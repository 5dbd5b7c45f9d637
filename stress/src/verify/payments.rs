//! Payments after a run: their invariants in SQL, and what the holds and
//! payments came to (for the `checkout` and `cart` reports), over the orders
//! of the run's sales or of its catalog books (the catalog orders with a
//! line of one of them; those have no sale).
//!
//! Invariants: every paid order has exactly one succeeded payment; every
//! payment that succeeded (succeeded, refunding, refunded) belongs to a paid
//! or refunded order; no hold is still pending more than
//! [`HOLD_GRACE_MS`] past its `expires_at`.

use serde::Serialize;
use sqlx::PgPool;

use super::during::HOLD_GRACE_MS;
use super::{v, Violation};
use crate::provision::SaleInfo;

/// Which orders: those of some sales, or the catalog orders of some books.
#[derive(Clone, Copy)]
enum Orders<'a> {
    OfSales(&'a [i64]),
    OfBooks(&'a [i64]),
}

impl<'a> Orders<'a> {
    /// The orders as a condition on `purchase_order o`, with the ids as `$1`.
    fn filter(self) -> &'static str {
        match self {
            Orders::OfSales(_) => "o.sale_id = any($1)",
            Orders::OfBooks(_) => {
                "o.sale_id is null and o.id in
                     (select l.order_id from order_line l where l.product_id = any($1))"
            }
        }
    }

    fn ids(self) -> &'a [i64] {
        match self {
            Orders::OfSales(ids) | Orders::OfBooks(ids) => ids,
        }
    }
}

/// Checks the payment invariants over the run's sales.
pub async fn check(db: &PgPool, sales: &[SaleInfo]) -> anyhow::Result<Vec<Violation>> {
    let ids: Vec<i64> = sales.iter().map(|s| s.id).collect();
    check_orders(db, Orders::OfSales(&ids)).await
}

/// Checks the payment invariants over the catalog orders of `books`.
pub async fn check_catalog(db: &PgPool, books: &[i64]) -> anyhow::Result<Vec<Violation>> {
    check_orders(db, Orders::OfBooks(books)).await
}

async fn check_orders(db: &PgPool, orders: Orders<'_>) -> anyhow::Result<Vec<Violation>> {
    let (unpaired, stray, overdue): (i64, i64, i64) = sqlx::query_as(&format!(
        "select count(*) filter (where o.status = 'paid' and
                    (select count(*) from payment y
                      where y.order_id = o.id and y.status = 'succeeded') <> 1),
                count(*) filter (where o.status not in ('paid', 'refunded') and exists
                    (select 1 from payment y where y.order_id = o.id
                        and y.status in ('succeeded', 'refunding', 'refunded'))),
                count(*) filter (where o.status = 'pending_payment'
                    and o.expires_at < now() - make_interval(secs => $2))
           from purchase_order o where {}",
        orders.filter()
    ))
    .bind(orders.ids())
    .bind(HOLD_GRACE_MS as f64 / 1000.0)
    .fetch_one(db)
    .await?;
    let mut out = Vec::new();
    if unpaired > 0 {
        out.push(v(
            "every_paid_order_has_one_payment",
            format!("{unpaired} paid order(s) without exactly one succeeded payment"),
        ));
    }
    if stray > 0 {
        out.push(v(
            "every_payment_has_its_order",
            format!("{stray} succeeded payment(s) whose order is neither paid nor refunded"),
        ));
    }
    if overdue > 0 {
        out.push(v(
            "holds_end_on_time",
            format!("{overdue} hold(s) still pending more than {HOLD_GRACE_MS} ms past expires_at"),
        ));
    }
    Ok(out)
}

/// What the holds and payments of a run's sales came to.
#[derive(Clone, Debug, Default, Serialize, sqlx::FromRow)]
pub struct PaymentFacts {
    pub paid: i64,
    pub pending: i64,
    pub expired: i64,
    pub payment_failed: i64,
    pub cancelled: i64,
    pub refunded: i64,
    /// Payments the provider reported succeeded (refunded ones included).
    pub payments_succeeded: i64,
    pub payments_failed: i64,
    /// Payments still open (their shopper walked away).
    pub payments_open: i64,
    /// Orders paid per second, from the first payment to the last.
    pub payments_per_sec: Option<f64>,
    /// Orders released per second (expired, failed), first to last release.
    pub releases_per_sec: Option<f64>,
    /// From the sale's start to its last payment.
    pub last_paid_secs: Option<f64>,
    /// Transactions that released orders (each release commits many orders
    /// at one database time), and the orders per transaction.
    pub release_transactions: i64,
    pub release_batch_mean: Option<f64>,
    pub release_batch_max: Option<i64>,
}

/// The facts of the run's sales; `None` when none of them has a hold.
pub async fn facts(db: &PgPool, sales: &[SaleInfo]) -> anyhow::Result<Option<PaymentFacts>> {
    if sales.iter().all(|s| s.hold_secs == 0) {
        return Ok(None);
    }
    let ids: Vec<i64> = sales.iter().map(|s| s.id).collect();
    facts_of(db, Orders::OfSales(&ids)).await.map(Some)
}

/// The facts of the catalog orders of `books`; `last_paid_secs` runs from
/// the first of them.
pub async fn catalog_facts(db: &PgPool, books: &[i64]) -> anyhow::Result<PaymentFacts> {
    facts_of(db, Orders::OfBooks(books)).await
}

async fn facts_of(db: &PgPool, orders: Orders<'_>) -> anyhow::Result<PaymentFacts> {
    let start = match orders {
        Orders::OfSales(_) => {
            "(select min(s.starts_at) from sale s
                                where s.id in (select sale_id from o where status = 'paid'))"
        }
        Orders::OfBooks(_) => "(select min(created_at) from o)",
    };
    let f: PaymentFacts = sqlx::query_as(&format!(
        "with o as (select * from purchase_order o where {}),
              y as (select p.* from payment p join o on o.id = p.order_id),
              r as (select released_at, count(*) as n from o
                     where status in ('expired', 'payment_failed') group by sale_id, released_at)
         select (select count(*) from o where status = 'paid') as paid,
                (select count(*) from o where status = 'pending_payment') as pending,
                (select count(*) from o where status = 'expired') as expired,
                (select count(*) from o where status = 'payment_failed') as payment_failed,
                (select count(*) from o where status = 'cancelled') as cancelled,
                (select count(*) from o where status = 'refunded') as refunded,
                (select count(*) from y where status in ('succeeded', 'refunding', 'refunded'))
                    as payments_succeeded,
                (select count(*) from y where status = 'failed') as payments_failed,
                (select count(*) from y where status = 'open') as payments_open,
                (select count(*) / nullif(extract(epoch from max(paid_at) - min(paid_at)), 0)
                   from o where status = 'paid')::float8 as payments_per_sec,
                (select sum(n) / nullif(extract(epoch from max(released_at) - min(released_at)), 0)
                   from r)::float8 as releases_per_sec,
                (select extract(epoch from max(o.paid_at) - {start})
                   from o where o.status = 'paid')::float8 as last_paid_secs,
                (select count(*) from r) as release_transactions,
                (select avg(n) from r)::float8 as release_batch_mean,
                (select max(n) from r) as release_batch_max",
        orders.filter()
    ))
    .bind(orders.ids())
    .fetch_one(db)
    .await?;
    Ok(f)
}
