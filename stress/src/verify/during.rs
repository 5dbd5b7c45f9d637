//! The invariants sampled while a run goes on, not only after it: every
//! 250 ms, one snapshot reads each sale's stock, `remaining` and live units,
//! and its product's `sell_count` and live units. At every instant `remaining + live ==
//! stock` and `sell_count == live units` must hold; a sample where either does
//! not is a violation, reported with the first failing sample's numbers.
//!
//! The same snapshot reads the payment invariants of each sale: every paid
//! order has exactly one succeeded payment, every payment that succeeded
//! belongs to a paid or refunded order, and no hold outlives its `expires_at`
//! by more than the sweep interval and a second ([`HOLD_GRACE_MS`]).
//!
//! For a waiting-room sale, the same snapshot checks that its places are
//! exactly 1..n, that the admitted tickets are exactly the places through
//! `admitted_through`, and that every order was bought on an admitted ticket.
//!
//! And the catalog's books stocked by the run, with the same payment
//! invariants over their catalog orders (see `catalog`): the sales' and the
//! books' statements run in one read-only repeatable-read transaction, so
//! they read one snapshot. A product's live units are those of both kinds:
//! its sale orders and the lines of catalog orders (which have no sale).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::catalog::{self, ProductSample};
use super::{v, Violation, LIVE};
use crate::environment::Stocked;

/// How often the sampler reads the invariants.
pub const EVERY: Duration = Duration::from_millis(250);

/// How long past its `expires_at` a pending hold may still be seen: the
/// expiry sweeper runs every 500 ms, plus a second to release.
pub const HOLD_GRACE_MS: i64 = 1500;

/// One sale in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SaleSample {
    pub sale_id: i64,
    pub product_id: i64,
    pub stock: i64,
    pub remaining: i64,
    /// Units in the sale's live orders.
    pub live_units: i64,
    /// The product's `sell_count`.
    pub sell_count: i64,
    /// Units of the product in live orders: of all its sales, and the lines
    /// of catalog orders.
    pub product_live_units: i64,
    /// Paid orders without exactly one succeeded payment.
    pub paid_unpaired: i64,
    /// Payments that succeeded whose order is neither paid nor refunded.
    pub stray_payments: i64,
    /// Pending holds more than [`HOLD_GRACE_MS`] past their `expires_at`.
    pub overdue_holds: i64,
    /// A waiting room whose places are not exactly 1..last_position, or whose
    /// admitted tickets are not exactly the places through
    /// `admitted_through`: how far off (0 when it holds, or without one).
    pub queue_mismatch: i64,
    /// Orders of a waiting-room sale not bought on an admitted ticket before
    /// its admission lapsed.
    pub unadmitted_orders: i64,
    /// Tickets without their sale's line, or used by an order that is not
    /// of their sale and user (migrations/0009: no foreign key keeps them).
    pub dangling_tickets: i64,
}

/// One consistent reading of every watched sale.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The database clock when the snapshot was taken.
    pub at: DateTime<Utc>,
    /// Time since the sampler started.
    pub since_start: Duration,
    pub sales: Vec<SaleSample>,
    /// The catalog's books stocked by the run.
    pub products: Vec<ProductSample>,
}

/// Reads one snapshot of `sales`.
pub async fn snapshot(db: &PgPool, sales: &[i64], since_start: Duration) -> sqlx::Result<Snapshot> {
    snapshot_with(db, sales, &[], since_start).await
}

/// Reads one snapshot of `sales` and `books`, in one transaction that sees
/// one snapshot of the database.
pub async fn snapshot_with(
    db: &PgPool,
    sales: &[i64],
    books: &[Stocked],
    since_start: Duration,
) -> sqlx::Result<Snapshot> {
    #[derive(sqlx::FromRow)]
    struct Row {
        at: DateTime<Utc>,
        #[sqlx(flatten)]
        sale: SaleSample,
    }
    // One pass over each product's live orders, aggregated without sorting:
    // about 30 ms at 100,000 orders.
    let grace = HOLD_GRACE_MS as f64 / 1000.0;
    let mut tx = db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select now() as at, s.id as sale_id, s.product_id, s.stock, s.remaining,
                coalesce(l.live_units, 0)::bigint as live_units, p.sell_count,
                (coalesce(l.product_live_units, 0) + coalesce(cl.units, 0))::bigint
                    as product_live_units,
                q.paid_unpaired, q.stray_payments, q.overdue_holds,
                case when sq.sale_id is null then 0
                     else abs(sq.last_position - qt.placed) + abs(qt.top - sq.last_position)
                          + abs(qt.admitted - sq.admitted_through) end::bigint as queue_mismatch,
                case when s.waiting_room then
                     (select count(*) from purchase_order o
                       where o.sale_id = s.id and not exists (
                             select 1 from queue_ticket t
                              where t.sale_id = s.id and t.user_id = o.user_id
                                and t.order_id = o.id and o.created_at < t.admitted_until))
                     else 0 end::bigint as unadmitted_orders,
                (case when sq.sale_id is null then qt.tickets else 0 end
                 + (select count(*) from queue_ticket t
                     where t.sale_id = s.id and t.order_id is not null
                       and not exists (select 1 from purchase_order o where o.id = t.order_id
                                          and o.sale_id = t.sale_id and o.user_id = t.user_id))
                )::bigint as dangling_tickets
           from sale s join product p on p.id = s.product_id
           left join sale_queue sq on sq.sale_id = s.id
           left join lateral (select count(*) as tickets, count(t.position) as placed,
                                     coalesce(max(t.position), 0) as top,
                                     count(t.admitted_until) as admitted
                                from queue_ticket t where t.sale_id = s.id) qt on true
           left join lateral (select sum(o.quantity) filter (where o.sale_id = s.id) as live_units,
                                     sum(o.quantity) as product_live_units
                                from purchase_order o
                               where o.product_id = s.product_id and o.status in {LIVE}) l on true
           left join lateral (select sum(ol.quantity) as units
                                from order_line ol join purchase_order o on o.id = ol.order_id
                               where ol.product_id = s.product_id and o.status in {LIVE}) cl on true
           cross join lateral (
               select count(*) filter (where o.status = 'paid' and
                          (select count(*) from payment y
                            where y.order_id = o.id and y.status = 'succeeded') <> 1) as paid_unpaired,
                      count(*) filter (where o.status not in ('paid', 'refunded') and exists
                          (select 1 from payment y where y.order_id = o.id
                              and y.status in ('succeeded', 'refunding', 'refunded'))) as stray_payments,
                      count(*) filter (where o.status = 'pending_payment' and
                          o.expires_at < now() - make_interval(secs => {grace})) as overdue_holds
                 from purchase_order o where o.sale_id = s.id) q
          where s.id = any($1)
          order by s.id"
    ))
    .bind(sales)
    .fetch_all(&mut *tx)
    .await?;
    let products = if books.is_empty() {
        Vec::new()
    } else {
        catalog::snapshot(&mut tx, books).await?
    };
    let at = match rows.first() {
        Some(r) => r.at,
        None => {
            sqlx::query_scalar("select now()")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    tx.commit().await?;
    let sales = rows.into_iter().map(|r| r.sale).collect();
    Ok(Snapshot {
        at,
        since_start,
        sales,
        products,
    })
}

/// The first broken invariant of a snapshot, if any.
pub fn check(s: &Snapshot) -> Option<Violation> {
    let when = format!(
        "at {:.2} s into the run ({})",
        s.since_start.as_secs_f64(),
        s.at.format("%H:%M:%S%.3f")
    );
    let sale = s.sales.iter().find_map(|x| {
        if x.remaining + x.live_units != x.stock {
            Some(format!(
                "sale {}: remaining {} + live units {} != stock {}",
                x.sale_id, x.remaining, x.live_units, x.stock
            ))
        } else if x.sell_count != x.product_live_units {
            Some(format!(
                "product {} (sale {}): sell_count {} != live units {}",
                x.product_id, x.sale_id, x.sell_count, x.product_live_units
            ))
        } else if x.paid_unpaired > 0 {
            Some(format!(
                "sale {}: {} paid order(s) without exactly one succeeded payment",
                x.sale_id, x.paid_unpaired
            ))
        } else if x.stray_payments > 0 {
            Some(format!(
                "sale {}: {} succeeded payment(s) whose order is neither paid nor refunded",
                x.sale_id, x.stray_payments
            ))
        } else if x.queue_mismatch > 0 {
            Some(format!(
                "sale {}: the waiting room's places or admissions are off by {}",
                x.sale_id, x.queue_mismatch
            ))
        } else if x.unadmitted_orders > 0 {
            Some(format!(
                "sale {}: {} order(s) not bought on an admitted ticket",
                x.sale_id, x.unadmitted_orders
            ))
        } else if x.dangling_tickets > 0 {
            Some(format!(
                "sale {}: {} ticket(s) without their line or with another's order",
                x.sale_id, x.dangling_tickets
            ))
        } else if x.overdue_holds > 0 {
            Some(format!(
                "sale {}: {} hold(s) pending more than {HOLD_GRACE_MS} ms past expires_at",
                x.sale_id, x.overdue_holds
            ))
        } else {
            None
        }
    });
    sale.or_else(|| s.products.iter().find_map(catalog::check_sample))
        .map(|what| v("invariants_hold_during_the_run", format!("{what}, {when}")))
}

/// What the sampler saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sampling {
    /// Snapshots taken (each covers every watched sale).
    pub samples: u64,
    /// Snapshots in which an invariant was broken.
    pub failed: u64,
    /// Snapshots that could not be read (the database did not answer).
    pub errors: u64,
    /// The first failing snapshot, as a violation.
    pub first_violation: Option<Violation>,
}

impl Sampling {
    fn record(&mut self, s: &Snapshot) {
        self.samples += 1;
        if let Some(violation) = check(s) {
            self.failed += 1;
            self.first_violation.get_or_insert(violation);
        }
    }
}

/// A running sampler; [`Sampler::finish`] stops it and says what it saw.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Sampling>,
}

impl Sampler {
    /// Samples, every [`EVERY`], the sales noted in `sales` from now on
    /// (those noted before are another run's).
    pub fn start(db: PgPool, sales: Arc<Mutex<Vec<i64>>>) -> Sampler {
        Sampler::watching(db, sales, Arc::default())
    }

    /// [`Sampler::start`], and the catalog's books noted in `books` from now
    /// on, in the same snapshot.
    pub fn watching(
        db: PgPool,
        sales: Arc<Mutex<Vec<i64>>>,
        books: Arc<Mutex<Vec<Stocked>>>,
    ) -> Sampler {
        let from = lock(&sales).len();
        let books_from = lock(&books).len();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen = Sampling::default();
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                // The last snapshot is taken after the load stopped.
                let ids: Vec<i64> = lock(&sales)[from..].to_vec();
                let stocked: Vec<Stocked> = lock(&books)[books_from..].to_vec();
                if !ids.is_empty() || !stocked.is_empty() {
                    match snapshot_with(&db, &ids, &stocked, started.elapsed()).await {
                        Ok(s) => seen.record(&s),
                        Err(_) => seen.errors += 1,
                    }
                }
                if last {
                    return seen;
                }
            }
        });
        Sampler { stop, task }
    }

    /// Takes a last snapshot, stops, and returns what was seen.
    pub async fn finish(self) -> Sampling {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

fn lock<T>(noted: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    noted.lock().unwrap_or_else(|e| e.into_inner())
}
