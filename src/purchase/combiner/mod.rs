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
//! The batch transaction itself is in [`batch`].
//!
//! A batch that fails before its commit wrote nothing and is retried; after
//! the last retry its buyers get `busy` (retryable). A failure *during* the
//! commit leaves the outcome unknown, so the database is asked which of the
//! batch's orders exist: those buyers get their order, the others are retried.
//! So no buyer is ever told 201 without a row, and no row is made without its
//! buyer being told 201 (unless the database stays unreachable through every
//! check, when `busy` is the honest answer and a retry shows
//! `already_purchased`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

mod batch;

use batch::{find_orders, transact, Failure, Outcome};

use super::PurchaseRequest;
use crate::config::PurchaseSettings;
use crate::db::orders::{Order, Release, ReleasedOrder};
use crate::db::Db;
use crate::error::ApiError;
use crate::live::{HeldOrder, LiveSale};

/// How long a sale's task waits for buyers before it ends itself.
const IDLE: Duration = Duration::from_secs(30);
/// Batches of one sale in flight at once (see `serve`).
const PIPELINE: usize = 2;
/// Retries of a batch that failed without writing anything.
const RETRIES: u32 = 3;

/// A buyer waiting for a batch.
struct Pending {
    user_id: i64,
    quantity: i32,
    reply: oneshot::Sender<Result<Order, ApiError>>,
}

/// Orders of the sale to release in the next batch, under the lock the batch
/// takes anyway, so releases never wait for the hot row one by one.
struct ReleaseJob {
    ids: Vec<i64>,
    why: Release,
    /// What this batch released of `ids` (possibly none: released before,
    /// paid meanwhile, not yet due).
    reply: oneshot::Sender<Result<Vec<ReleasedOrder>, ApiError>>,
}

/// What a sale's queue carries.
enum Job {
    Buy(Pending),
    Release(ReleaseJob),
}

/// The work of one batch transaction.
#[derive(Default)]
struct Batch {
    buys: Vec<Pending>,
    releases: Vec<ReleaseJob>,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Buy(p) => self.buys.push(p),
            Job::Release(r) => self.releases.push(r),
        }
    }

    fn len(&self) -> usize {
        self.buys.len() + self.releases.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers everyone `busy` (retryable): the batch could not be served.
    fn busy(self) {
        for p in self.buys {
            let _ = p.reply.send(Err(ApiError::Busy(1)));
        }
        for r in self.releases {
            let _ = r.reply.send(Err(ApiError::Busy(1)));
        }
    }
}

type Queues = Arc<Mutex<HashMap<i64, mpsc::Sender<Job>>>>;

/// The per-sale queues of one process.
pub struct Combiner {
    pool: Db,
    settings: PurchaseSettings,
    queues: Queues,
}

impl Combiner {
    pub fn new(pool: Db, settings: PurchaseSettings) -> Self {
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
        self.enqueue(
            &live,
            Job::Buy(Pending {
                user_id: req.user_id,
                quantity: req.quantity.get(),
                reply,
            }),
        )?;
        answer.await.map_err(|_| {
            ApiError::Internal(anyhow::anyhow!("the purchase task ended without an answer"))
        })?
    }

    /// Queues a release of `ids` and waits for its batch to commit. A full
    /// queue is answered `busy` at once.
    pub async fn release(
        &self,
        live: Arc<LiveSale>,
        ids: Vec<i64>,
        why: Release,
    ) -> Result<Vec<ReleasedOrder>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(&live, Job::Release(ReleaseJob { ids, why, reply }))?;
        answer.await.map_err(|_| {
            ApiError::Internal(anyhow::anyhow!("the purchase task ended without an answer"))
        })?
    }

    fn enqueue(&self, live: &Arc<LiveSale>, mut job: Job) -> Result<(), ApiError> {
        // A queue whose task just ended for idleness is closed: take a new one.
        for _ in 0..2 {
            let queue = self.queue(live)?;
            match queue.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(ApiError::Busy(1)),
                Err(mpsc::error::TrySendError::Closed(j)) => {
                    job = j;
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

    fn queue(&self, live: &Arc<LiveSale>) -> Result<mpsc::Sender<Job>, ApiError> {
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
    pool: &Db,
    live: &LiveSale,
    requests: &[(i64, i32)],
) -> Vec<Result<Order, ApiError>> {
    let mut answers = Vec::with_capacity(requests.len());
    let buys = requests
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
    let batch = Batch {
        buys,
        releases: Vec::new(),
    };
    run(pool, live, batch, None, false).await;
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        out.push(a.await.unwrap_or(Err(ApiError::Busy(1))));
    }
    out
}

/// The task of one sale: batch, run, answer, until idle.
async fn serve(
    pool: Db,
    live: Arc<LiveSale>,
    mut rx: mpsc::Receiver<Job>,
    settings: PurchaseSettings,
    queues: Queues,
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
                while let Ok(job) = rx.try_recv() {
                    rest.push(job);
                }
                while !rest.is_empty() {
                    let mut batch = Batch::default();
                    for job in rest.drain(..rest.len().min(max_batch)) {
                        batch.push(job);
                    }
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
        let mut batch = Batch {
            buys: Vec::with_capacity(max_batch.min(1024)),
            releases: Vec::new(),
        };
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
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
/// Serves one batch to the end, retrying as described in the module docs.
async fn run(
    pool: &Db,
    live: &LiveSale,
    mut batch: Batch,
    mut locked: Option<oneshot::Sender<()>>,
    require_verified: bool,
) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = std::time::Instant::now();
        // Holders learned by this batch are remembered only if no release
        // came between its start and its answer.
        let mark = live.release_mark();
        let result = transact(pool, live.id, &batch, &mut locked, require_verified).await;
        tracing::debug!(
            sale_id = live.id,
            buyers = batch.buys.len(),
            releases = batch.releases.len(),
            took_us = started.elapsed().as_micros() as u64,
            "batch"
        );
        match result {
            Ok(outcome) => {
                finish(live, batch, outcome, mark);
                return;
            }
            Err(Failure::Clean(e)) if attempt < RETRIES => {
                tracing::warn!(sale_id = live.id, error = %e, attempt, "purchase batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(Failure::Clean(e)) => {
                tracing::warn!(sale_id = live.id, error = %e, "purchase batch failed; answering busy");
                batch.busy();
                return;
            }
            Err(Failure::Unknown(e, made)) => {
                tracing::warn!(sale_id = live.id, error = %e, "commit outcome unknown; asking the database");
                let users: Vec<i64> = batch.buys.iter().map(|p| p.user_id).collect();
                let Some(found) = find_orders(pool, live.id, &users).await else {
                    batch.busy();
                    return;
                };
                // An order the lost commit would have made exists: it
                // committed, and its buyer is answered with it. An order
                // from before means the buyer already held one.
                // Releases are retried: one that committed finds nothing left
                // to release (callers read the order back for its state).
                let mut rest = Vec::new();
                for p in std::mem::take(&mut batch.buys) {
                    match found.get(&p.user_id) {
                        Some(order) => {
                            let held = HeldOrder {
                                id: order.id,
                                number: order.number.clone(),
                            };
                            live.remember_buyers_since(mark, vec![(p.user_id, Some(held))], false);
                            let _ = p.reply.send(if made.contains(&order.id) {
                                Ok(order.clone())
                            } else {
                                Err(ApiError::AlreadyPurchased)
                            });
                        }
                        None => rest.push(p),
                    }
                }

                batch.buys = rest;
                if batch.is_empty() || attempt >= RETRIES {
                    batch.busy();
                    return;
                }
            }
        }
    }
}

/// Applies a committed outcome to the board and answers every waiter.
fn finish(live: &LiveSale, batch: Batch, outcome: Outcome, mut mark: u64) {
    // Released buyers may buy again: what this process knew of holders is
    // void (before this batch's buyers are remembered). A release by anyone
    // else meanwhile voids this batch's holders too.
    if outcome.released_any {
        let before = live.forget_buyers();
        mark = if before == mark { before + 1 } else { u64::MAX };
    }
    for (r, answer) in batch.releases.into_iter().zip(outcome.released) {
        let _ = r.reply.send(Ok(answer));
    }
    let mut buyers = Vec::new();
    for (p, answer) in batch.buys.into_iter().zip(outcome.answers) {
        match &answer {
            Ok(order) => buyers.push((
                p.user_id,
                Some(HeldOrder {
                    id: order.id,
                    number: order.number.clone(),
                }),
            )),
            Err(ApiError::AlreadyPurchased) => buyers.push((p.user_id, None)),
            _ => {}
        }
        let _ = p.reply.send(answer);
    }
    live.remember_buyers_since(mark, buyers, false);
    if let Some(n) = outcome.remaining {
        live.set_remaining(n);
    }
}
