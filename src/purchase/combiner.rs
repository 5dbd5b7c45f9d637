//! Many buyers per locked transaction.
//!
//! Each sale that receives purchases gets a bounded queue and one task. The
//! task takes the first waiting buyer plus every other that arrived while the
//! previous transaction ran (up to `max_batch`; there is no fixed wait), and
//! serves them all in one transaction. Two transactions of a sale overlap:
//! the next batch is formed once the current one holds the lock and waits for
//! it inside PostgreSQL, so its start costs no time on the critical path;
//! batches still take the lock in the order they were formed (a batch that is
//! retried after a failure may follow the next one).
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
//!
//! A batch that fails before its commit wrote nothing and is retried; after
//! the last retry its buyers get `busy` (retryable). A failure *during* the
//! commit leaves the outcome unknown, so the database is asked which of the
//! batch's orders exist: those buyers get their order, the others are retried.
//! So no buyer is ever told 201 without a row, and no row is made without its
//! buyer being told 201 (unless the database stays unreachable through every
//! check, when `busy` is the honest answer and a retry shows
//! `already_purchased`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{decide, window_error, BuyerFacts, Decision, LockedSale, PurchaseRequest};
use crate::config::PurchaseSettings;
use crate::error::ApiError;
use crate::live::{LiveSale, CHANNEL};
use crate::orders::{Order, COLUMNS};

/// How long a sale's task waits for buyers before it ends itself.
const IDLE: Duration = Duration::from_secs(30);
/// Batches of one sale in flight at once (see `serve`).
const PIPELINE: usize = 2;
/// Retries of a batch that failed without writing anything.
const RETRIES: u32 = 3;

struct Pending {
    user_id: i64,
    quantity: i32,
    reply: oneshot::Sender<Result<Order, ApiError>>,
}

/// The per-sale queues of one process.
pub struct Combiner {
    pool: PgPool,
    settings: PurchaseSettings,
    queues: Arc<Mutex<HashMap<i64, mpsc::Sender<Pending>>>>,
}

impl Combiner {
    pub fn new(pool: PgPool, settings: PurchaseSettings) -> Self {
        Combiner {
            pool,
            settings,
            queues: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Queues a purchase and waits for its batch to commit. A full queue is
    /// answered `busy` at once.
    pub async fn submit(
        &self,
        live: Arc<LiveSale>,
        req: PurchaseRequest,
    ) -> Result<Order, ApiError> {
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            user_id: req.user_id,
            quantity: req.quantity.get(),
            reply,
        };
        // A queue whose task just ended for idleness is closed: take a new one.
        for _ in 0..2 {
            let queue = self.queue(&live)?;
            match queue.try_send(pending) {
                Ok(()) => {
                    return answer.await.map_err(|_| {
                        ApiError::Internal(anyhow::anyhow!(
                            "the purchase task ended without an answer"
                        ))
                    })?;
                }
                Err(mpsc::error::TrySendError::Full(_)) => return Err(ApiError::Busy(1)),
                Err(mpsc::error::TrySendError::Closed(p)) => {
                    pending = p;
                    if let Ok(mut q) = self.queues.lock() {
                        if q.get(&live.id).is_some_and(|s| s.is_closed()) {
                            q.remove(&live.id);
                        }
                    }
                }
            }
        }
        Err(ApiError::Busy(1))
    }

    fn queue(&self, live: &Arc<LiveSale>) -> Result<mpsc::Sender<Pending>, ApiError> {
        let mut queues = self
            .queues
            .lock()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("queue map poisoned")))?;
        if let Some(q) = queues.get(&live.id) {
            if !q.is_closed() {
                return Ok(q.clone());
            }
        }
        let (tx, rx) = mpsc::channel(self.settings.queue_limit);
        queues.insert(live.id, tx.clone());
        tokio::spawn(serve(
            self.pool.clone(),
            live.clone(),
            rx,
            self.settings,
            self.queues.clone(),
        ));
        Ok(tx)
    }
}

/// Serves `requests` (all for `live`'s sale) as one batch, exactly as the
/// sale's task would, and returns each buyer's answer in order. The queue is
/// bypassed: this is the seam for tests and benchmarks of the batch itself.
/// Buyers need no verified email here.
pub async fn serve_batch(
    pool: &PgPool,
    live: &LiveSale,
    requests: &[(i64, i32)],
) -> Vec<Result<Order, ApiError>> {
    let mut answers = Vec::with_capacity(requests.len());
    let batch = requests
        .iter()
        .map(|&(user_id, quantity)| {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            Pending {
                user_id,
                quantity,
                reply,
            }
        })
        .collect();
    run(pool, live, batch, None, false).await;
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        out.push(a.await.unwrap_or(Err(ApiError::Busy(1))));
    }
    out
}

/// The task of one sale: batch, run, answer, until idle.
async fn serve(
    pool: PgPool,
    live: Arc<LiveSale>,
    mut rx: mpsc::Receiver<Pending>,
    settings: PurchaseSettings,
    queues: Arc<Mutex<HashMap<i64, mpsc::Sender<Pending>>>>,
) {
    let (max_batch, require_verified) = (settings.max_batch, settings.require_verified_email);
    // Two batches overlap: the next one is formed once the current one holds
    // the sale's lock, and queues its own lock request behind it inside
    // PostgreSQL, so no round trip of its start lies on the critical path.
    let slots = Arc::new(Semaphore::new(PIPELINE));
    let mut locked_prev: Option<oneshot::Receiver<()>> = None;
    loop {
        let first = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(_) => {
                // Idle: leave the map, refuse new senders, serve stragglers.
                if let Ok(mut q) = queues.lock() {
                    q.remove(&live.id);
                }
                rx.close();
                let _all = slots.acquire_many(PIPELINE as u32).await;
                let mut rest = Vec::new();
                while let Ok(p) = rx.try_recv() {
                    rest.push(p);
                }
                while !rest.is_empty() {
                    let batch: Vec<Pending> = rest.drain(..rest.len().min(max_batch)).collect();
                    run(&pool, &live, batch, None, require_verified).await;
                }
                return;
            }
        };
        // Arrival order: this batch asks for the lock only after the previous
        // one holds it (or gave up before taking it).
        if let Some(prev) = locked_prev.take() {
            let _ = prev.await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(max_batch.min(1024));
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (locked_tx, locked_rx) = oneshot::channel();
        locked_prev = Some(locked_rx);
        let (pool, live) = (pool.clone(), live.clone());
        tokio::spawn(async move {
            run(&pool, &live, batch, Some(locked_tx), require_verified).await;
            drop(slot);
        });
    }
}

/// What a batch transaction decided.
struct Outcome {
    answers: Vec<Result<Order, ApiError>>,
    /// Remaining stock after the commit, when the sale row was read.
    remaining: Option<i64>,
}

enum Failure {
    /// Nothing was written.
    Clean(ApiError),
    /// The commit may or may not have happened; these are the ids of the
    /// orders it would have made.
    Unknown(ApiError, HashSet<i64>),
}

/// Serves one batch to the end, retrying as described in the module docs.
async fn run(
    pool: &PgPool,
    live: &LiveSale,
    mut batch: Vec<Pending>,
    mut locked: Option<oneshot::Sender<()>>,
    require_verified: bool,
) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = std::time::Instant::now();
        let result = transact(pool, live.id, &batch, &mut locked, require_verified).await;
        tracing::debug!(
            sale_id = live.id,
            size = batch.len(),
            took_us = started.elapsed().as_micros() as u64,
            "batch"
        );
        match result {
            Ok(outcome) => {
                finish(live, batch, outcome);
                return;
            }
            Err(Failure::Clean(e)) if attempt < RETRIES => {
                tracing::warn!(sale_id = live.id, error = %e, attempt, "purchase batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(Failure::Clean(e)) => {
                tracing::warn!(sale_id = live.id, error = %e, "purchase batch failed; answering busy");
                for p in batch {
                    let _ = p.reply.send(Err(ApiError::Busy(1)));
                }
                return;
            }
            Err(Failure::Unknown(e, made)) => {
                tracing::warn!(sale_id = live.id, error = %e, "commit outcome unknown; asking the database");
                let users: Vec<i64> = batch.iter().map(|p| p.user_id).collect();
                let Some(found) = find_orders(pool, live.id, &users).await else {
                    for p in batch {
                        let _ = p.reply.send(Err(ApiError::Busy(1)));
                    }
                    return;
                };
                // An order the lost commit would have made exists: it
                // committed, and its buyer is answered with it. An order
                // from before means the buyer already held one.
                let mut rest = Vec::new();
                for p in batch {
                    match found.get(&p.user_id) {
                        Some(order) if made.contains(&order.id) => {
                            live.remember_buyers([p.user_id]);
                            let _ = p.reply.send(Ok(order.clone()));
                        }
                        Some(_) => {
                            live.remember_buyers([p.user_id]);
                            let _ = p.reply.send(Err(ApiError::AlreadyPurchased));
                        }
                        None => rest.push(p),
                    }
                }

                if rest.is_empty() || attempt >= RETRIES {
                    for p in rest {
                        let _ = p.reply.send(Err(ApiError::Busy(1)));
                    }
                    return;
                }
                batch = rest;
            }
        }
    }
}

/// Applies a committed outcome to the board and answers every waiter.
fn finish(live: &LiveSale, batch: Vec<Pending>, outcome: Outcome) {
    let mut buyers = Vec::new();
    for (p, answer) in batch.into_iter().zip(outcome.answers) {
        if matches!(answer, Ok(_) | Err(ApiError::AlreadyPurchased)) {
            buyers.push(p.user_id);
        }
        let _ = p.reply.send(answer);
    }
    live.remember_buyers(buyers);
    if let Some(n) = outcome.remaining {
        live.set_remaining(n);
    }
}

/// The orders that exist for these buyers in this sale, or `None` when the
/// database cannot be asked (after a few tries).
async fn find_orders(pool: &PgPool, sale_id: i64, users: &[i64]) -> Option<HashMap<i64, Order>> {
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
async fn transact(
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
                (select pg_notify($6, $1::text || ':' || s.remaining::text) from s) is null as announced
           from ins"
    ))
    .bind(sale_id)
    .bind(sale.product_id)
    .bind(sale.price_cents)
    .bind(&win_users)
    .bind(&win_qty)
    .bind(CHANNEL)
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
