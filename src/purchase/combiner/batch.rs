//! One batch transaction: many buyers of one sale under one lock.
//!
//! 1. `SELECT ... FOR UPDATE` on the sale row, window by `now()`, and the
//!    batch's accounts in the same round trip;
//! 2. each buyer decided on their own, in arrival order: already purchased
//!    (earlier in this batch, or known to this process), over the limit,
//!    sold out;
//! 3. one statement inserts every accepted order (`ON CONFLICT DO NOTHING`
//!    on the one-order-per-buyer key) and moves `remaining` and `sell_count`
//!    by what was actually inserted;
//! 4. `NOTIFY` the new remaining stock to every instance, commit, and only
//!    then answer each waiter.
//!
//! Orders already in the table are not read before deciding: the live board
//! turns away the buyers this process knows, so a holder rarely reaches a
//! batch, and the key refuses the ones that do, who are then answered
//! `already_purchased`. That saves a round trip under the lock. When the
//! stock runs out within a batch, a holder's unit could be owed to someone
//! refused `sold_out`, and a holder refused `sold_out` should hear
//! `already_purchased`: then the batch's orders are read, under the same
//! lock, and every buyer is decided again.

use std::collections::{HashMap, HashSet};

use sqlx::FromRow;
use std::time::Duration;

use tokio::sync::oneshot;

use super::super::rules::{decide, window_error, BuyerFacts, Decision, LockedSale};
use super::{Batch, Pending, ReleaseJob};
use crate::db::orders::{self, Order, Release, ReleasedOrder, Releasing, COLUMNS, LIVE};
use crate::db::sales::remaining_announcement;
use crate::db::Db;
use crate::error::ApiError;

/// What a batch transaction decided.
pub(super) struct Outcome {
    pub(super) answers: Vec<Result<Order, ApiError>>,
    /// What each release job released, in the batch's order.
    pub(super) released: Vec<Vec<ReleasedOrder>>,
    /// Some order was released: its buyer may buy again.
    pub(super) released_any: bool,
    /// Remaining stock after the commit, when the sale row was read.
    pub(super) remaining: Option<i64>,
}

pub(super) enum Failure {
    /// Nothing was written.
    Clean(ApiError),
    /// The commit may or may not have happened; these are the ids of the
    /// orders it would have made.
    Unknown(ApiError, HashSet<i64>),
}

/// The orders that exist for these buyers in this sale, or `None` when the
/// database cannot be asked (after a few tries).
pub(super) async fn find_orders(
    pool: &Db,
    sale_id: i64,
    users: &[i64],
) -> Option<HashMap<i64, Order>> {
    for attempt in 1..=5u64 {
        let rows: Result<Vec<Order>, sqlx::Error> = sqlx::query_as(&format!(
            "select {COLUMNS} from purchase_order
              where sale_id = $1 and user_id = any($2) and status in {LIVE}"
        ))
        .bind(sale_id)
        .bind(users)
        .fetch_all(pool)
        .await;
        match rows {
            Ok(rows) => return Some(rows.into_iter().map(|o| (o.user_id, o)).collect()),
            Err(e) => {
                tracing::warn!(sale_id, error = %e, "cannot read back a batch's orders; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    None
}

/// One batch transaction. See the module docs for the steps.
pub(super) async fn transact(
    pool: &Db,
    sale_id: i64,
    batch: &Batch,
    lock_signal: &mut Option<oneshot::Sender<()>>,
    require_verified: bool,
) -> Result<Outcome, Failure> {
    let clean = |e: sqlx::Error| Failure::Clean(ApiError::from(e));
    let buys = &batch.buys;
    let users: Vec<i64> = buys.iter().map(|p| p.user_id).collect();
    let mut tx = pool.begin().await.map_err(clean)?;
    // The lock, and the batch's accounts in the same round trip (accounts do
    // not need the lock; orders do, and are read after it when asked).
    let locked: Option<LockedBatch> = sqlx::query_as::<_, LockedBatch>(
        "select product_id, remaining, price_cents, per_user_limit, hold_secs,
                waiting_room, verified_only,
                cancelled_at is not null as cancelled,
                now() < starts_at as not_started,
                now() >= ends_at as ended,
                array(select id from app_user where id = any($2)) as accounts,
                array(select id from app_user where id = any($2) and disabled_at is not null) as disabled,
                case when $3 or verified_only then array(select id from app_user
                                         where id = any($2) and email_verified_at is null)
                     else '{}'::bigint[] end as unverified,
                -- A waiting-room sale sells only on an admitted ticket that is
                -- neither lapsed (by the database clock) nor used.
                -- (one probe of the ticket key per buyer: see `read_held`)
                case when waiting_room then array(
                         select b.u from unnest($2::bigint[]) as b(u)
                          cross join lateral (select 1 from queue_ticket t
                                               where t.sale_id = $1 and t.user_id = b.u
                                                 and t.admitted_until > now() and t.used_at is null
                                               limit 1) ok)
                     else '{}'::bigint[] end as admitted
           from sale where id = $1 for update",
    )
    .bind(sale_id)
    .bind(&users)
    .bind(require_verified)
    .fetch_optional(&mut *tx)
    .await
    .map_err(clean)?;
    // The next batch may now queue for the lock behind this one.
    if let Some(signal) = lock_signal.take() {
        let _ = signal.send(());
    }
    let Some(LockedBatch {
        mut sale,
        accounts,
        disabled,
        unverified,
        admitted,
    }) = locked
    else {
        return Ok(Outcome {
            answers: buys
                .iter()
                .map(|_| Err(ApiError::NotFound("no such sale")))
                .collect(),
            released: batch.releases.iter().map(|_| Vec::new()).collect(),
            released_any: false,
            remaining: None,
        });
    };
    // Releases first, whatever the window: their units go back to the stock
    // and are there for this batch's buyers at once.
    let released = release_all(&mut tx, sale_id, &batch.releases)
        .await
        .map_err(clean)?;
    let released_any = released.iter().any(|r| !r.is_empty());
    sale.remaining += released
        .iter()
        .flatten()
        .map(|o| i64::from(o.quantity))
        .sum::<i64>();
    let mut answers: Vec<Option<Result<Order, ApiError>>> = Vec::new();
    let (mut win_users, mut win_qty) = (Vec::new(), Vec::new());
    if window_error(&sale).is_some() {
        let refusal = || window_error(&sale).unwrap_or(ApiError::SaleEnded);
        answers = buys.iter().map(|_| Some(Err(refusal()))).collect();
    } else if !buys.is_empty() {
        let set = |ids: Vec<i64>| ids.into_iter().collect::<HashSet<i64>>();
        let facts = Facts {
            accounts: set(accounts),
            disabled: set(disabled),
            unverified: set(unverified),
            admitted: sale.waiting_room.then(|| set(admitted)),
        };
        // First decided without reading the batch's orders (see the module
        // docs); if the stock runs out in the batch, or someone is not
        // admitted (a holder's ticket is used), decided again with them.
        let mut held = HashSet::new();
        let mut decided = decide_batch(buys, &sale, &facts, &held);
        if decided.recheck {
            held = set(read_held(&mut tx, sale_id, &users).await.map_err(clean)?);
            decided = decide_batch(buys, &sale, &facts, &held);
        }
        (answers, win_users, win_qty) = (decided.answers, decided.win_users, decided.win_qty);
    }
    if win_users.is_empty() && !released_any {
        // Nothing to write: the transaction ends with its lock, unchanged.
        drop(tx);
        return Ok(Outcome {
            answers: answers
                .into_iter()
                .map(|a| a.unwrap_or(Err(ApiError::Busy(1))))
                .collect(),
            released,
            released_any,
            remaining: Some(sale.remaining),
        });
    }
    let orders = if win_users.is_empty() {
        Vec::new()
    } else {
        insert_orders(
            &mut tx,
            pool.is_pooled(),
            sale_id,
            &sale,
            &win_users,
            &win_qty,
        )
        .await
        .map_err(clean)?
    };
    let sold: i64 = orders.iter().map(|o| i64::from(o.quantity)).sum();
    let after = sale.remaining - sold;
    if let Err(e) = tx.commit().await {
        let made = orders.iter().map(|o| o.id).collect();
        return Err(Failure::Unknown(ApiError::from(e), made));
    }

    let mut by_user: HashMap<i64, Order> = orders.into_iter().map(|o| (o.user_id, o)).collect();
    let answers = buys
        .iter()
        .zip(answers)
        .map(|(p, a)| match a {
            Some(refusal) => refusal,
            // Accepted but not inserted: the key found a live order the
            // check could not see. That buyer already holds one.
            None => by_user.remove(&p.user_id).ok_or(ApiError::AlreadyPurchased),
        })
        .collect();
    Ok(Outcome {
        answers,
        released,
        released_any,
        remaining: Some(after),
    })
}

/// Runs the batch's releases under its lock, one statement per kind of
/// release, and returns what each job released.
async fn release_all(
    tx: &mut sqlx::PgConnection,
    sale_id: i64,
    jobs: &[ReleaseJob],
) -> Result<Vec<Vec<ReleasedOrder>>, sqlx::Error> {
    let mut by_why: HashMap<Release, Vec<i64>> = HashMap::new();
    for job in jobs {
        by_why.entry(job.why).or_default().extend(&job.ids);
    }
    let mut done: HashMap<i64, ReleasedOrder> = HashMap::new();
    for (why, ids) in by_why {
        let (orders, _) = orders::release(tx, sale_id, Releasing::Orders(&ids), why).await?;
        done.extend(orders.into_iter().map(|o| (o.id, o)));
    }
    Ok(jobs
        .iter()
        .map(|job| job.ids.iter().filter_map(|id| done.remove(id)).collect())
        .collect())
}

/// Inserts every accepted order and moves both counters by what was really
/// inserted, in one statement (sale before product, as everywhere): the
/// function `insert_sale_orders` of `migrations/0010_sale_orders_function.sql`,
/// which states what it keeps. With a hold the orders wait for payment until
/// `expires_at` (database clock); without one they are confirmed, and each
/// one's confirmation email commits with it. On a waiting-room sale each
/// buyer's ticket is used by the order.
async fn insert_orders(
    tx: &mut sqlx::PgConnection,
    pooled: bool,
    sale_id: i64,
    sale: &LockedSale,
    win_users: &[i64],
    win_qty: &[i32],
) -> Result<Vec<Order>, sqlx::Error> {
    if pooled {
        // Behind a pooler a statement with parameters costs two round trips
        // (described, then run: nothing can stay prepared), both under the
        // lock. Every value here is a number, written as a literal, and the
        // simple query takes one round trip.
        let list = |v: Vec<String>| format!("'{{{}}}'", v.join(","));
        let sale_lit = sale_id.to_string();
        let users = list(win_users.iter().map(i64::to_string).collect());
        let quantities = list(win_qty.iter().map(i32::to_string).collect());
        let sql = insert_statement([
            &sale_lit,
            &sale.product_id.to_string(),
            &sale.price_cents.to_string(),
            &format!("{users}::bigint[]"),
            &format!("{quantities}::integer[]"),
            &sale.hold_secs.to_string(),
            if sale.waiting_room { "true" } else { "false" },
        ]);
        let rows = sqlx::Executor::fetch_all(tx, sqlx::raw_sql(&sql)).await?;
        return rows.iter().map(Order::from_row).collect();
    }
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| insert_statement(["$1", "$2", "$3", "$4", "$5", "$6", "$7"]));
    sqlx::query_as(SQL.as_str())
        .bind(sale_id)
        .bind(sale.product_id)
        .bind(sale.price_cents)
        .bind(win_users)
        .bind(win_qty)
        .bind(sale.hold_secs)
        .bind(sale.waiting_room)
        .fetch_all(tx)
        .await
}

/// The statement of [`insert_orders`], with its seven arguments (the sale's
/// first) as placeholders or literals.
fn insert_statement(args: [&str; 7]) -> String {
    let [sale, product, price, users, quantities, hold_secs, tickets] = args;
    format!(
        "with ins as (select * from insert_sale_orders({sale}, {product}, {price}, {users},
                                                        {quantities}, {hold_secs}, {tickets}))
         select {COLUMNS},
                -- Announce the new stock to every instance (sent on commit).
                (select {announce} from (select remaining from ins limit 1) s) is null
                    as announced
           from ins",
        announce = remaining_announcement(sale, "s.remaining"),
    )
}

/// The batch's decisions: an answer for each refused buyer (`None` for the
/// accepted), and the accepted buyers and quantities in arrival order.
struct Decided {
    answers: Vec<Option<Result<Order, ApiError>>>,
    win_users: Vec<i64>,
    win_qty: Vec<i32>,
    /// Someone was refused for lack of stock or admission, which a holder
    /// should hear as `already_purchased`: decide again knowing the holders.
    recheck: bool,
}

/// What the database says of the batch's buyers, read under the lock.
struct Facts {
    accounts: HashSet<i64>,
    disabled: HashSet<i64>,
    unverified: HashSet<i64>,
    /// With a waiting room: the buyers with a ticket they may buy on now.
    admitted: Option<HashSet<i64>>,
}

/// Decides each buyer in arrival order; `held` are buyers known to hold an
/// order already, and earlier in this batch counts as holding one too.
fn decide_batch(batch: &[Pending], sale: &LockedSale, f: &Facts, held: &HashSet<i64>) -> Decided {
    let mut holders: HashSet<i64> = HashSet::new();
    let mut remaining = sale.remaining;
    let mut d = Decided {
        answers: Vec::with_capacity(batch.len()),
        win_users: Vec::new(),
        win_qty: Vec::new(),
        recheck: false,
    };
    for p in batch {
        let facts = BuyerFacts {
            exists: f.accounts.contains(&p.user_id),
            disabled: f.disabled.contains(&p.user_id),
            unverified: f.unverified.contains(&p.user_id),
            already: held.contains(&p.user_id) || holders.contains(&p.user_id),
            not_admitted: f.admitted.as_ref().is_some_and(|a| !a.contains(&p.user_id)),
        };
        match decide(facts, p.quantity, sale.per_user_limit, remaining) {
            Decision::Accept => {
                holders.insert(p.user_id);
                remaining -= i64::from(p.quantity);
                d.win_users.push(p.user_id);
                d.win_qty.push(p.quantity);
                d.answers.push(None);
            }
            Decision::Refuse(e) => {
                d.recheck |= matches!(e, ApiError::SoldOut(_) | ApiError::NotAdmitted);
                d.answers.push(Some(Err(e)));
            }
        }
    }
    d
}

/// Which of `users` hold an order in the sale: one probe of the (sale_id,
/// user_id) key per buyer, forced by the correlated LATERAL. The statistics
/// of a sale that is filling fast (a few rows at the last ANALYZE, thousands
/// now) otherwise lead the planner to read every order of the sale and match
/// the batch against them, under the lock, at a cost that grows with each
/// batch (`user_id = any($2)` as a filter, or a hash join). Not a prepared
/// statement either, so a plan made while the table was nearly empty does not
/// stay with the connection.
async fn read_held(
    tx: &mut sqlx::PgConnection,
    sale_id: i64,
    users: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select b.user_id
           from unnest($2::bigint[]) as b(user_id)
          cross join lateral (select 1 from purchase_order o
                               where o.sale_id = $1 and o.user_id = b.user_id
                                 and o.status in ('pending_payment', 'paid', 'confirmed')
                               limit 1) held",
    )
    .bind(sale_id)
    .bind(users)
    .persistent(false)
    .fetch_all(tx)
    .await
}

#[derive(sqlx::FromRow)]
struct LockedBatch {
    #[sqlx(flatten)]
    sale: LockedSale,
    accounts: Vec<i64>,
    disabled: Vec<i64>,
    unverified: Vec<i64>,
    admitted: Vec<i64>,
}
