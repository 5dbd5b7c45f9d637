//! With `--pooler pgbouncer`: how many server connections PgBouncer held
//! open during the run, sampled every [`EVERY`], against its pool size. Its
//! connections log in as their own role (see `flashsale::embedded_pg`), so
//! `pg_stat_activity` tells them from the direct ones (`LISTEN`, the
//! harness's own).

use std::time::Duration;

use flashsale::embedded_pg::POOL_ROLE;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{v, Violation};

pub const EVERY: Duration = Duration::from_millis(100);

/// What the pooler did to the server.
#[derive(Clone, Debug, Serialize)]
pub struct PoolerFacts {
    pub pool_size: u32,
    /// The most server connections seen at once.
    pub max_server_connections: i64,
    pub samples: u64,
}

impl PoolerFacts {
    /// More server connections than the pool may lend is a broken promise.
    pub fn violation(&self) -> Option<Violation> {
        (self.max_server_connections > i64::from(self.pool_size)).then(|| {
            v(
                "pooler_bounds_connections",
                format!(
                    "PgBouncer held {} server connections at once, above its pool of {}",
                    self.max_server_connections, self.pool_size
                ),
            )
        })
    }
}

/// A running count; [`Watch::finish`] stops it.
pub struct Watch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<(i64, u64)>,
    pool_size: u32,
}

impl Watch {
    pub fn start(db: PgPool, pool_size: u32) -> Watch {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut max, mut samples) = (0i64, 0u64);
            let mut tick = tokio::time::interval(EVERY);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                let n: Result<i64, _> =
                    sqlx::query_scalar("select count(*) from pg_stat_activity where usename = $1")
                        .bind(POOL_ROLE)
                        .fetch_one(&db)
                        .await;
                if let Ok(n) = n {
                    max = max.max(n);
                    samples += 1;
                }
                if last {
                    return (max, samples);
                }
            }
        });
        Watch {
            stop,
            task,
            pool_size,
        }
    }

    pub async fn finish(self) -> PoolerFacts {
        let _ = self.stop.send(());
        let (max_server_connections, samples) = self.task.await.unwrap_or_default();
        PoolerFacts {
            pool_size: self.pool_size,
            max_server_connections,
            samples,
        }
    }
}
