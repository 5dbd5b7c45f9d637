//! The purchase engine: the one place where stock turns into orders.
//!
//! Every decision about stock is made inside a READ COMMITTED transaction
//! that holds the sale row's lock:
//!
//! 1. `SELECT ... FOR UPDATE` on the sale row, which holds `remaining`;
//! 2. the window is checked against the database clock (`now()`, the
//!    transaction's start), and the sale must not be cancelled;
//! 3. the buyer must not already have an order in this sale (checked here, and
//!    backed by the `purchase_order_sale_id_user_id_key` unique constraint);
//! 4. the quantity must not exceed the sale's per-user limit;
//! 5. the quantity must not exceed `remaining`;
//! 6. the order is inserted, `remaining` decremented and the product's
//!    `sell_count` incremented, locking sale then product, always in that order;
//! 7. commit. Nothing slow runs while the lock is held.
//!
//! The rules themselves are in [`rules`]; two engines apply them
//! ([`PurchaseMode`]):
//!
//! - `per_purchase`: one transaction per buyer ([`single`]).
//! - `combined` (default): one task per sale queues its buyers and serves all
//!   that arrived while the previous transaction ran in one transaction,
//!   deciding each buyer on its own in arrival order ([`combiner`]). In front
//!   of it, the live board ([`crate::live`]) turns away requests that cannot
//!   succeed without touching the database.
//!
//! Either way the work runs on a task of its own, so a client that hangs up
//! mid-request cannot cut a transaction short.

mod combiner;
pub mod rules;
mod single;
pub mod sweeper;

use std::sync::Arc;

use crate::config::{PurchaseMode, PurchaseSettings};
use crate::db::catalog;
use crate::db::orders::{self, Order, Release, ReleasedOrder};
use crate::db::Db;
use crate::domain::Quantity;
use crate::error::ApiError;
use crate::live::{Board, HeldOrder, LiveSale, BOUNDARY_MARGIN};

pub use combiner::{serve_batch, Combiner};

/// A purchase request that passed input validation.
#[derive(Clone, Copy, Debug)]
pub struct PurchaseRequest {
    pub sale_id: i64,
    pub user_id: i64,
    pub quantity: Quantity,
}

/// Connections of the combined engine's own pool: its batches (each sale's
/// row lock holder, [`combiner`] pipelines two per sale) and the expiry
/// sweeper take theirs here, so requests queued on the shared pool (payments,
/// pages, a storm of anything) never delay the transaction that every buyer
/// of a sale waits for, nor a hold's release.
pub const ENGINE_CONNECTIONS: u32 = 8;

/// The purchase engine of one process.
#[derive(Clone)]
pub struct PurchaseEngine {
    pool: Db,
    /// The engine's own connections ([`ENGINE_CONNECTIONS`]).
    own: Db,
    mode: PurchaseMode,
    require_verified: bool,
    board: Arc<Board>,
    combiner: Arc<Combiner>,
}

impl PurchaseEngine {
    /// An engine on `pool`'s database, sharing the live board with the
    /// routes. Its batches run on a pool of their own to the same database
    /// (opened lazily, with `pool`'s options and acquire timeout).
    pub fn new(pool: Db, board: Arc<Board>, settings: PurchaseSettings) -> Self {
        let own = pool.sibling(ENGINE_CONNECTIONS);
        PurchaseEngine {
            combiner: Arc::new(Combiner::new(own.clone(), settings)),
            own,
            mode: settings.mode,
            require_verified: settings.require_verified_email,
            pool,
            board,
        }
    }

    /// The engine's own pool (the expiry sweeper reads on it too).
    pub fn own_pool(&self) -> &Db {
        &self.own
    }

    /// Which engine serves purchases.
    pub fn mode(&self) -> PurchaseMode {
        self.mode
    }

    /// Runs one purchase to completion, even if the caller stops waiting.
    /// `Ok` means the order is committed. A buyer who holds a live order in
    /// the sale is told which (`already_purchased` with its id and number).
    pub async fn purchase(&self, req: PurchaseRequest) -> Result<Order, ApiError> {
        let result = self.decide(req).await;
        if !matches!(result, Err(ApiError::AlreadyPurchased)) {
            return result;
        }
        // A holder whose order the board did not know: look it up, and let
        // the combined engine's board know it from now on (unless a release
        // comes between the lookup and the remembering).
        let mark = match self.mode {
            PurchaseMode::Combined => self.board.cached_mark(req.sale_id),
            PurchaseMode::PerPurchase => None,
        };
        match orders::live_order_of(&self.pool, req.sale_id, req.user_id).await {
            Ok(Some((order_id, order_number))) => {
                if let Some((live, mark)) = mark {
                    let held = HeldOrder {
                        id: order_id,
                        number: order_number.clone(),
                    };
                    live.remember_buyers_since(mark, vec![(req.user_id, Some(held))], false);
                }
                Err(ApiError::AlreadyHolds {
                    order_id,
                    order_number,
                })
            }
            // Released meanwhile, or the database cannot say: the answer
            // stands without the order.
            _ => Err(ApiError::AlreadyPurchased),
        }
    }

    async fn decide(&self, req: PurchaseRequest) -> Result<Order, ApiError> {
        match self.mode {
            PurchaseMode::PerPurchase => {
                let pool = self.pool.clone();
                let board = self.board.clone();
                let require_verified = self.require_verified;
                let span =
                    tracing::info_span!("purchase", sale_id = req.sale_id, user_id = req.user_id);
                let task = tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        let (order, remaining) =
                            single::purchase(&pool, req, require_verified).await?;
                        if let Ok(live) = board.get(req.sale_id).await {
                            live.set_remaining(remaining);
                        }
                        Ok(order)
                    },
                    span,
                ));
                task.await
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("purchase task failed: {e}")))?
            }
            PurchaseMode::Combined => {
                let live = self.board.get(req.sale_id).await?;
                fail_fast(&self.board, &live, req)?;
                self.combiner.submit(live, req).await
            }
        }
    }

    /// Ends these orders of one sale for `why` and gives their units back,
    /// where the release applies (an order already released, paid meanwhile
    /// or not yet due is left as it is), and returns what was released. Runs
    /// to completion even if the caller stops waiting. In the combined engine
    /// the release rides in the sale's next batch, under the lock that batch
    /// takes anyway, and its units are there for that batch's buyers.
    pub async fn release(
        &self,
        sale_id: i64,
        ids: Vec<i64>,
        why: Release,
    ) -> Result<Vec<ReleasedOrder>, ApiError> {
        let live = self.board.get(sale_id).await?;
        match self.mode {
            PurchaseMode::PerPurchase => {
                let pool = self.pool.clone();
                let task = tokio::spawn(async move {
                    let (released, remaining) = single::release(&pool, sale_id, &ids, why).await?;
                    if let Some(n) = remaining {
                        let _ = live.forget_buyers();
                        live.set_remaining(n);
                    }
                    Ok(released)
                });
                task.await
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("release task failed: {e}")))?
            }
            PurchaseMode::Combined => self.combiner.release(live, ids, why).await,
        }
    }

    /// Ends one order for `why` and gives its units back: a sale's through
    /// [`Self::release`], a catalog order's (`sale_id` is `None`) to its
    /// products' stock.
    pub async fn release_order(
        &self,
        sale_id: Option<i64>,
        order_id: i64,
        why: Release,
    ) -> Result<Vec<ReleasedOrder>, ApiError> {
        match sale_id {
            Some(sale_id) => self.release(sale_id, vec![order_id], why).await,
            None => self.release_catalog(vec![order_id], why).await,
        }
    }

    /// Ends these catalog orders for `why` where it applies, and puts their
    /// units back in their products' stock, in one transaction that runs to
    /// completion even if the caller stops waiting.
    pub async fn release_catalog(
        &self,
        ids: Vec<i64>,
        why: Release,
    ) -> Result<Vec<ReleasedOrder>, ApiError> {
        let pool = self.pool.clone();
        tokio::spawn(async move { catalog::release(&pool, &ids, why).await })
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("release task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// An admin's cancel: a pending or confirmed order becomes `cancelled`,
    /// a paid one `refunded` (its payment is refunded), and its units go back
    /// to the stock. Returns the order as it ends.
    pub async fn cancel(&self, order_id: i64) -> Result<Order, ApiError> {
        let order = orders::get(&self.pool, order_id, 0, true).await?;
        let why = match order.status.as_str() {
            "pending_payment" | "confirmed" => Some(Release::Cancelled),
            "paid" => Some(Release::Refunded),
            _ => None,
        };
        if let Some(why) = why {
            self.release_order(order.sale_id, order.id, why).await?;
        }
        // Read back: the release may have found the order changed meanwhile
        // (paid, expired), or a retried batch may have released it already.
        let after = orders::get(&self.pool, order_id, 0, true).await?;
        match (why, after.status.as_str()) {
            (Some(Release::Cancelled), "cancelled") | (Some(Release::Refunded), "refunded") => {
                Ok(after)
            }
            // Paid between the read and the release: refund it now.
            (Some(Release::Cancelled), "paid") => Box::pin(self.cancel(order_id)).await,
            (_, other) => Err(ApiError::OrderNotCancellable(format!(
                "the order is {other}; only pending, confirmed and paid orders can be cancelled"
            ))),
        }
    }
}

/// Refuses from memory what the database would refuse. Only answers that
/// cannot turn into a success are given here: the board is never ahead of
/// the database, and window edges are left to the database clock.
fn fail_fast(board: &Board, live: &Arc<LiveSale>, req: PurchaseRequest) -> Result<(), ApiError> {
    let t = live.terms();
    let now = board.now();
    if t.cancelled {
        return Err(ApiError::SaleCancelled);
    }
    if now < t.starts_at - BOUNDARY_MARGIN {
        return Err(ApiError::SaleNotStarted);
    }
    if now >= t.ends_at + BOUNDARY_MARGIN {
        return Err(ApiError::SaleEnded);
    }
    match live.known_holding(req.user_id) {
        Some(Some(order)) => {
            return Err(ApiError::AlreadyHolds {
                order_id: order.id,
                order_number: order.number,
            })
        }
        Some(None) => return Err(ApiError::AlreadyPurchased),
        None => {}
    }
    // Far back in the line: no admission this process has not heard of yet
    // can have reached this place.
    if t.waiting_room
        && live
            .admission
            .certainly_waiting(req.user_id, t.admit_per_sec)
    {
        return Err(ApiError::NotAdmitted);
    }
    let started = now >= t.starts_at + BOUNDARY_MARGIN;
    if started {
        // After the start, the limit cannot change.
        if req.quantity.get() > t.per_user_limit {
            return Err(ApiError::QuantityExceedsLimit(t.per_user_limit));
        }
        // A buyer who holds an order hears `already_purchased` from the
        // database even when the sale is sold out, so `sold_out` comes from
        // memory only once every holder is known here. A release raises the
        // stock and voids the holders (see `crate::live`).
        if live.remaining() == 0 && board.holders_known(live) {
            return Err(ApiError::SoldOut("sold out".into()));
        }
    }
    Ok(())
}
