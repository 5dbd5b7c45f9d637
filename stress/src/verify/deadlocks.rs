//! No deadlock in the run's database, read before and after every run.
//!
//! The engine answers a deadlock `busy`, which the other checks would let
//! pass, so it is looked for apart, two ways:
//!
//! - `pg_stat_database.deadlocks` of the run's database. A backend sends its
//!   counts to the shared statistics at most once a second, and an idle one
//!   up to 10 s later, so a deadlock at the very end of a run may not be in
//!   the counter yet when the run is verified; crash recovery resets the
//!   counter to zero.
//! - With the harness's own cluster, the lines `deadlock detected` in the
//!   cluster's server logs, which each backend writes at once, and which
//!   survive a crash.
//!
//! An increase of either fails the run.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::PgPool;

use super::{v, Violation};

/// One reading of both sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeadlockReading {
    /// `pg_stat_database.deadlocks` of the current database.
    pub counted: i64,
    /// `deadlock detected` lines in the cluster's logs, when they are ours.
    pub logged: Option<u64>,
}

/// Reads the counter of `db`'s database and counts the lines in `logs`.
pub async fn read(db: &PgPool, logs: &[PathBuf]) -> anyhow::Result<DeadlockReading> {
    let counted: i64 = sqlx::query_scalar(
        "select coalesce(deadlocks, 0) from pg_stat_database where datname = current_database()",
    )
    .fetch_one(db)
    .await?;
    let logged = if logs.is_empty() {
        None
    } else {
        Some(logs.iter().map(PathBuf::as_path).map(logged_in).sum())
    };
    Ok(DeadlockReading { counted, logged })
}

fn logged_in(path: &Path) -> u64 {
    // A log not written yet (the restarted server's) holds none.
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let needle = b"deadlock detected";
    bytes.windows(needle.len()).filter(|w| w == needle).count() as u64
}

/// The deadlocks of one run: both readings, and whether crash recovery reset
/// the counter in between.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Deadlocks {
    pub before: DeadlockReading,
    pub after: DeadlockReading,
    pub counter_reset: bool,
}

impl Deadlocks {
    pub fn new(before: DeadlockReading, after: DeadlockReading) -> Deadlocks {
        Deadlocks {
            before,
            after,
            counter_reset: after.counted < before.counted,
        }
    }

    /// Deadlocks seen during the run: the larger of the two sources.
    pub fn during(&self) -> u64 {
        let counted = if self.counter_reset {
            self.after.counted
        } else {
            self.after.counted - self.before.counted
        };
        let logged = match (self.before.logged, self.after.logged) {
            (Some(b), Some(a)) => a.saturating_sub(b),
            _ => 0,
        };
        (counted.max(0) as u64).max(logged)
    }

    /// A violation when there was any.
    pub fn violation(&self) -> Option<Violation> {
        let n = self.during();
        (n > 0).then(|| {
            v(
                "no_deadlocks",
                format!(
                    "{n} deadlock(s) in the run's database (pg_stat_database.deadlocks {} -> {}{}; \
                     'deadlock detected' in the server log {} -> {}): the engine answered them busy",
                    self.before.counted,
                    self.after.counted,
                    if self.counter_reset { ", reset by crash recovery" } else { "" },
                    show(self.before.logged),
                    show(self.after.logged),
                ),
            )
        })
    }
}

fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "unread".to_string(), |n| n.to_string())
}
