//! A streaming replica for the reads that tolerate lag (`DATABASE_READ_URL`):
//! the catalog, product pages, best sellers, search and seller revenue.
//! Never a purchase, payment or admission decision, and never a shopper's own
//! orders (read on the primary, so an order just made or paid is there).
//!
//! The replica serves reads only while it is fresh: every half of
//! `DATABASE_READ_MAX_LAG_MS` a probe reads the primary's WAL position and
//! the replica's replayed position, and the replica is fresh while it has
//! replayed everything the primary had written at the previous probe (so it
//! is at most about one interval, half the tolerance, behind). A replica that
//! falls behind, stops answering or is no longer in recovery sends the reads
//! to the primary until it catches up again.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Db;

/// What the last probe found.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ReplicaState {
    /// The replica answered the probe.
    pub reachable: bool,
    /// It serves reads now.
    pub fresh: bool,
    /// WAL bytes the primary had that the replica had not replayed (-1:
    /// unknown).
    pub lag_bytes: i64,
}

/// The replica and how fresh it is.
pub struct Replica {
    db: Db,
    primary: Db,
    max_lag: Duration,
    reachable: AtomicBool,
    fresh: AtomicBool,
    lag_bytes: AtomicI64,
}

impl Replica {
    pub fn new(db: Db, primary: Db, max_lag: Duration) -> Arc<Replica> {
        Arc::new(Replica {
            db,
            primary,
            max_lag,
            reachable: AtomicBool::new(false),
            fresh: AtomicBool::new(false),
            lag_bytes: AtomicI64::new(-1),
        })
    }

    /// The replica's pool while it is fresh.
    pub fn fresh(&self) -> Option<&Db> {
        self.fresh.load(Ordering::Relaxed).then_some(&self.db)
    }

    /// Its pool (for `/metrics`).
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn state(&self) -> ReplicaState {
        ReplicaState {
            reachable: self.reachable.load(Ordering::Relaxed),
            fresh: self.fresh.load(Ordering::Relaxed),
            lag_bytes: self.lag_bytes.load(Ordering::Relaxed),
        }
    }

    /// Probes until aborted.
    pub async fn watch(self: Arc<Self>) {
        let every = (self.max_lag / 2).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The primary's position at the previous probe.
        let mut previous: Option<i64> = None;
        loop {
            tick.tick().await;
            let primary: Result<i64, _> =
                sqlx::query_scalar("select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
                    .fetch_one(&self.primary)
                    .await;
            let replica: Result<(bool, Option<i64>), _> = sqlx::query_as(
                "select pg_is_in_recovery(),
                        pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint",
            )
            .fetch_one(&self.db)
            .await;
            let (fresh, lag) = match (&primary, &replica) {
                (Ok(p), Ok((true, Some(r)))) => {
                    (previous.is_some_and(|prev| *r >= prev), (p - r).max(0))
                }
                _ => (false, -1),
            };
            if !fresh && self.fresh.load(Ordering::Relaxed) {
                tracing::warn!(
                    lag_bytes = lag,
                    "the read replica is behind or unreachable: reads go to the primary"
                );
            }
            self.reachable.store(replica.is_ok(), Ordering::Relaxed);
            self.fresh.store(fresh, Ordering::Relaxed);
            self.lag_bytes.store(lag, Ordering::Relaxed);
            previous = primary.ok();
        }
    }
}
