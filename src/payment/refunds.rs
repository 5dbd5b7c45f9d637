//! The refund worker: payments marked `refunding` (a paid order an admin
//! cancelled, a late payment without a unit) are refunded through the
//! provider, outside every lock, and marked `refunded` once it confirms.
//! Every instance runs one; a claim is a lease, so two never ask for the
//! same refund at once, and one that stops mid-way leaves its claim to run
//! out and be taken again (providers refund a charge at most once).

use std::sync::Arc;
use std::time::Duration;

use super::Provider;
use crate::db::payments;
use crate::db::Db;

/// How often the worker looks for refunds to make.
const EVERY: Duration = Duration::from_millis(500);
/// How long a claimed refund is left to its worker.
const LEASE_SECS: f64 = 30.0;
/// Refunds claimed at a time.
const BATCH: i64 = 16;

/// Refunds until aborted.
pub async fn run(pool: Db, provider: Arc<dyn Provider>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = round(&pool, provider.as_ref()).await {
            tracing::warn!(error = %e, "refunding failed");
        }
    }
}

/// One round: returns how many refunds the provider confirmed.
pub async fn round(pool: &Db, provider: &dyn Provider) -> Result<usize, sqlx::Error> {
    let mut done = 0;
    for r in payments::claim_refunds(pool, BATCH, LEASE_SECS).await? {
        match provider.refund(&r.provider_ref).await {
            Ok(()) => {
                payments::refunded(pool, r.id).await?;
                tracing::info!(payment_id = %r.id, amount_cents = r.amount_cents, currency = %r.currency, "refunded");
                done += 1;
            }
            Err(e) => {
                tracing::warn!(payment_id = %r.id, error = %e, "the provider did not refund; retried later");
                payments::refund_failed(pool, r.id, &e.to_string()).await?;
            }
        }
    }
    Ok(done)
}
