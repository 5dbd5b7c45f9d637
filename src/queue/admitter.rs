//! The admitter: one instance at a time draws each waiting-room sale's places
//! at its start and admits places at the sale's `admit_per_sec`.
//!
//! The instance that holds the `queue_admitter` lease
//! ([`crate::db::take_lease`]) does the work; when it stops (or freezes),
//! another takes over once the lease runs out. A lease row rather than an
//! advisory lock: it needs no session held open (it works through a
//! transaction-pooling PgBouncer), and an instance that hangs loses it too.
//! Two admitters at once would still be correct: each step runs under the
//! line's row lock and reads its credit from the row
//! ([`crate::db::queue::admit`]); the lease only keeps the work in one place.

use std::time::Duration;

use uuid::Uuid;

use crate::db::Db;

/// How often the admitter steps each line.
pub const EVERY: Duration = Duration::from_millis(100);
/// How long the lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(2);
/// The lease is renewed (or asked for) this often.
const RENEW: Duration = Duration::from_millis(500);

/// Admits until aborted.
pub async fn run(pool: Db) {
    let me = Uuid::new_v4();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = false;
    let mut asked: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if asked.is_none_or(|t| t.elapsed() >= RENEW) {
            asked = Some(tokio::time::Instant::now());
            held = match crate::db::take_lease(&pool, "queue_admitter", me, LEASE).await {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the admitter's lease");
                    false
                }
            };
        }
        if held {
            if let Err(e) = step(&pool).await {
                tracing::warn!(error = %e, "admitting from the queues failed");
            }
        }
    }
}

/// One step of every line that needs one.
pub async fn step(pool: &Db) -> Result<(), sqlx::Error> {
    for sale_id in crate::db::queue::due(pool, EVERY.as_secs_f64()).await? {
        crate::db::queue::admit(pool, sale_id).await?;
    }
    Ok(())
}
