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
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::oneshot;

use super::super::rules::{decide, window_error, BuyerFacts, Decision, LockedSale};
use super::Pending;
use crate::db::orders::{Order, COLUMNS};
use crate::db::sales::remaining_announcement;
use crate::error::ApiError;

/// What a batch transaction decided.
pub(super) struct Outcome {
    pub(super) answers: Vec<Result<Order, ApiError>>,
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
    pool: &PgPool,
    sale_id: i64,
    users: &[i64],
) -> Option<HashMap<i64, Order>> {
    for attempt in 1..=5u64 {
        let rows: Result<Vec<Order>, sqlx::Error> = sqlx::query_as(&format!(
            "select {COLUMNS} from purchase_order where sale_id = $1 and user_id = any($2)"
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
    pool: &PgPool,
    sale_id: i64,
    batch: &[Pending],
    lock_signal: &mut Option<oneshot::Sender<()>>,
    require_verified: bool,
) -> Result<Outcome, Failure> {
    let clean = |e: sqlx::Error| Failure::Clean(ApiError::from(e));
    let users: Vec<i64> = batch.iter().map(|p| p.user_id).collect();
    let mut tx = pool.begin().await.map_err(clean)?;
    // The lock, and the batch's accounts in the same round trip (accounts do
    // not need the lock; orders do, and are read after it when asked).
    let locked: Option<LockedBatch> = sqlx::query_as::<_, LockedBatch>(
        "select product_id, remaining, price_cents, per_user_limit,
                cancelled_at is not null as cancelled,
                now() < starts_at as not_started,
                now() >= ends_at as ended,
                array(select id from app_user where id = any($2)) as accounts,
                array(select id from app_user where id = any($2) and disabled_at is not null) as disabled,
                case when $3 then array(select id from app_user
                                         where id = any($2) and email_verified_at is null)
                     else '{}'::bigint[] end as unverified
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
        sale,
        accounts,
        disabled,
        unverified,
    }) = locked
    else {
        return Ok(Outcome {
            answers: batch
                .iter()
                .map(|_| Err(ApiError::NotFound("no such sale")))
                .collect(),
            remaining: None,
        });
    };
    if window_error(&sale).is_some() {
        return Ok(Outcome {
            answers: batch
                .iter()
                .map(|_| Err(window_error(&sale).unwrap_or(ApiError::SaleEnded)))
                .collect(),
            remaining: Some(sale.remaining),
        });
    }
    let set = |ids: Vec<i64>| ids.into_iter().collect::<HashSet<i64>>();
    let (accounts, disabled, unverified) = (set(accounts), set(disabled), set(unverified));
    // First decided without reading the batch's orders (see the module docs);
    // if the stock runs out in the batch, decided again with them read.
    let mut held = HashSet::new();
    let mut decided = decide_batch(batch, &sale, &accounts, &disabled, &unverified, &held);
    if decided.ran_out {
        held = set(read_held(&mut tx, sale_id, &users).await.map_err(clean)?);
        decided = decide_batch(batch, &sale, &accounts, &disabled, &unverified, &held);
    }
    let Decided {
        answers,
        win_users,
        win_qty,
        ..
    } = decided;
    if win_users.is_empty() {
        // Nothing to write: the transaction ends with its lock, unchanged.
        drop(tx);
        return Ok(Outcome {
            answers: answers
                .into_iter()
                .map(|a| a.unwrap_or(Err(ApiError::Busy(1))))
                .collect(),
            remaining: Some(sale.remaining),
        });
    }

    // Insert every accepted order and move both counters by what was really
    // inserted, in one statement (sale before product, as everywhere).
    let orders: Vec<Order> = sqlx::query_as(&format!(
        "with ins as (
             insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents)
             select $1, $2, b.user_id, b.quantity, $3, b.quantity * $3
               from unnest($4::bigint[], $5::int[]) with ordinality as b(user_id, quantity, n)
              order by b.n
             on conflict on constraint purchase_order_sale_id_user_id_key do nothing
             returning {COLUMNS}),
         s as (update sale set remaining = remaining - (select coalesce(sum(quantity), 0) from ins)
                where id = $1 returning remaining),
         p as (update product set sell_count = sell_count + (select coalesce(sum(quantity), 0) from ins)
                where id = $2),
         -- Each order's confirmation email commits with it.
         m as (insert into outbox (kind, user_id, order_id)
               select 'order_confirmation', user_id, id from ins)
         select {COLUMNS},
                -- Announce the new stock to every instance (sent on commit).
                (select {announce} from s) is null as announced
           from ins",
        announce = remaining_announcement("$1", "s.remaining")
    ))
    .bind(sale_id)
    .bind(sale.product_id)
    .bind(sale.price_cents)
    .bind(&win_users)
    .bind(&win_qty)
    .fetch_all(&mut *tx)
    .await
    .map_err(clean)?;
    let sold: i64 = orders.iter().map(|o| i64::from(o.quantity)).sum();
    let after = sale.remaining - sold;
    if let Err(e) = tx.commit().await {
        let made = orders.iter().map(|o| o.id).collect();
        return Err(Failure::Unknown(ApiError::from(e), made));
    }

    let mut by_user: HashMap<i64, Order> = orders.into_iter().map(|o| (o.user_id, o)).collect();
    let answers = batch
        .iter()
        .zip(answers)
        .map(|(p, a)| match a {
            Some(refusal) => refusal,
            // Accepted but not inserted: the constraint found an order the
            // check could not see. That buyer already holds one.
            None => by_user.remove(&p.user_id).ok_or(ApiError::AlreadyPurchased),
        })
        .collect();
    Ok(Outcome {
        answers,
        remaining: Some(after),
    })
}

/// The batch's decisions: an answer for each refused buyer (`None` for the
/// accepted), and the accepted buyers and quantities in arrival order.
struct Decided {
    answers: Vec<Option<Result<Order, ApiError>>>,
    win_users: Vec<i64>,
    win_qty: Vec<i32>,
    /// Someone was refused for lack of stock.
    ran_out: bool,
}

/// Decides each buyer in arrival order; `held` are buyers known to hold an
/// order already, and earlier in this batch counts as holding one too.
fn decide_batch(
    batch: &[Pending],
    sale: &LockedSale,
    accounts: &HashSet<i64>,
    disabled: &HashSet<i64>,
    unverified: &HashSet<i64>,
    held: &HashSet<i64>,
) -> Decided {
    let mut holders: HashSet<i64> = HashSet::new();
    let mut remaining = sale.remaining;
    let mut d = Decided {
        answers: Vec::with_capacity(batch.len()),
        win_users: Vec::new(),
        win_qty: Vec::new(),
        ran_out: false,
    };
    for p in batch {
        let facts = BuyerFacts {
            exists: accounts.contains(&p.user_id),
            disabled: disabled.contains(&p.user_id),
            unverified: unverified.contains(&p.user_id),
            already: held.contains(&p.user_id) || holders.contains(&p.user_id),
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
                d.ran_out |= matches!(e, ApiError::SoldOut(_));
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
}
