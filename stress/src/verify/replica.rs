//! With `--replica`: which role served the reads that tolerate lag (each
//! instance's `db_reads_total` from `/metrics`, counted over the run), and
//! the standby's replay lag, sampled from the primary's `pg_stat_replication`
//! every [`EVERY`].

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const EVERY: Duration = Duration::from_millis(100);

/// What the replica did during the run.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaFacts {
    /// Reads that tolerate lag served by the replica, and by the primary
    /// (while the replica was not fresh), over every instance.
    pub replica_reads: f64,
    pub primary_reads: f64,
    /// The most replay lag seen (`pg_stat_replication.replay_lag`), in ms.
    pub max_replay_lag_ms: f64,
    /// Samples in which the standby was streaming, of all taken.
    pub streaming_samples: u64,
    pub samples: u64,
}

/// A running count; [`Watch::finish`] stops it.
pub struct Watch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<(f64, u64, u64)>,
    targets: Vec<String>,
    before: HashMap<String, f64>,
}

impl Watch {
    pub async fn start(db: PgPool, targets: Vec<String>) -> Watch {
        let before = reads(&targets).await;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut max_ms, mut streaming, mut samples) = (0f64, 0u64, 0u64);
            let mut tick = tokio::time::interval(EVERY);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                let row: Result<(i64, f64), _> = sqlx::query_as(
                    "select count(*) filter (where state = 'streaming'),
                            coalesce(max(extract(epoch from replay_lag) * 1000), 0)::float8
                       from pg_stat_replication",
                )
                .fetch_one(&db)
                .await;
                if let Ok((n, ms)) = row {
                    samples += 1;
                    streaming += u64::from(n > 0);
                    max_ms = max_ms.max(ms);
                }
                if last {
                    return (max_ms, streaming, samples);
                }
            }
        });
        Watch {
            stop,
            task,
            targets,
            before,
        }
    }

    pub async fn finish(self) -> ReplicaFacts {
        let _ = self.stop.send(());
        let (max_replay_lag_ms, streaming_samples, samples) = self.task.await.unwrap_or_default();
        let after = reads(&self.targets).await;
        let during = |role: &str| {
            after.get(role).copied().unwrap_or(0.0) - self.before.get(role).copied().unwrap_or(0.0)
        };
        ReplicaFacts {
            replica_reads: during("replica"),
            primary_reads: during("primary"),
            max_replay_lag_ms,
            streaming_samples,
            samples,
        }
    }
}

/// `db_reads_total` by role, summed over the instances.
async fn reads(targets: &[String]) -> HashMap<String, f64> {
    let client = reqwest::Client::new();
    let mut total = HashMap::new();
    for t in targets {
        let Ok(resp) = client.get(format!("{t}/metrics")).send().await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("flashsale_db_reads_total{role=\"") else {
                continue;
            };
            if let Some((role, n)) = rest.split_once("\"} ") {
                *total.entry(role.to_string()).or_insert(0.0) += n.trim().parse().unwrap_or(0.0);
            }
        }
    }
    total
}
