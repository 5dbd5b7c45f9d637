//! The expiry sweeper: holds past `expires_at` are released within about a
//! second, and their units go back to the stock.
//!
//! One instance sweeps at a time, the holder of the `hold_sweeper` lease
//! ([`crate::db::take_lease`]), renewed on every round; when it stops, another
//! instance takes over once the lease runs out. Each round reads the overdue
//! holds, soonest first, and hands them to the purchase engine per sale, so a
//! hot sale's expiries ride in its next purchase batch under the lock it takes
//! anyway, never one lock wait per hold. A hold paid meanwhile is not touched:
//! the release applies only to orders still pending and overdue, under the
//! sale's lock. Catalog holds go back to their products' stock in one
//! transaction per round. The same round releases pending holds whose payment failed
//! but were not released (the webhook's process stopped in between).

use std::time::Duration;

use futures_util::future::join_all;
use uuid::Uuid;

use super::PurchaseEngine;
use crate::db::orders::Release;
use crate::db::Db;
use crate::error::ApiError;

/// How often the sweeper looks for overdue holds.
pub const EVERY: Duration = Duration::from_millis(500);
/// How long a lease lasts without renewal: another instance takes over this
/// long after the sweeping one stops.
const LEASE: Duration = Duration::from_secs(3);
/// Most holds released per round (the rest wait for the next one).
const MAX_PER_ROUND: i64 = 10_000;

/// Sweeps until aborted.
pub async fn run(pool: Db, engine: PurchaseEngine) {
    let me = Uuid::new_v4();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::db::take_lease(&pool, "hold_sweeper", me, LEASE).await {
            Ok(true) => {
                if let Err(e) = sweep(&pool, &engine).await {
                    tracing::warn!(error = %e, "sweeping expired holds failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the sweeper's lease"),
        }
    }
}

/// One round: releases the overdue holds and returns how many it released.
pub async fn sweep(pool: &Db, engine: &PurchaseEngine) -> Result<usize, ApiError> {
    // Catalog orders come under the sale `None`.
    let due: Vec<(Option<i64>, Vec<i64>)> = sqlx::query_as(
        "select sale_id, array_agg(id order by id)
           from (select id, sale_id from purchase_order
                  where status = 'pending_payment' and expires_at <= now()
                  order by expires_at limit $1) due
          group by sale_id",
    )
    .bind(MAX_PER_ROUND)
    .fetch_all(pool)
    .await?;
    // Holds whose payment failed but whose release did not happen (the
    // process stopped in between) are released as failed.
    let failed = crate::db::payments::failed_unreleased(pool).await?;
    let rounds = due
        .into_iter()
        .map(|(sale_id, ids)| (sale_id, ids, Release::Expired))
        .chain(
            failed
                .into_iter()
                .map(|(sale_id, ids)| (sale_id, ids, Release::PaymentFailed)),
        )
        .map(|(sale_id, ids, why)| async move {
            match sale_id {
                Some(sale_id) => engine.release(sale_id, ids, why).await,
                None => engine.release_catalog(ids, why).await,
            }
        });
    let mut released = 0;
    for result in join_all(rounds).await {
        match result {
            Ok(orders) => released += orders.len(),
            // A busy sale is swept again next round.
            Err(e) => tracing::warn!(error = %e, "releasing expired holds failed"),
        }
    }
    if released > 0 {
        tracing::info!(released, "expired holds released");
    }
    Ok(released)
}
