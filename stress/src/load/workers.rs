//! The workers that fire a run's requests: a fixed number of them, each
//! sending one request at a time and recording into a ledger of its own, so
//! that "connections" means requests in flight. Jobs are handed out from a
//! shared counter (`run_jobs`) or repeated until a deadline (`run_for`); the
//! ledgers are merged when every worker is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Ledger;

/// Runs `jobs` on `connections` concurrent workers; each worker records into
/// its own ledger, merged at the end. `work(worker, job, ledger)` handles one
/// job. A progress bar counts finished jobs when stderr is a terminal.
pub async fn run_jobs<J, F, Fut>(connections: usize, jobs: Vec<J>, label: &str, work: F) -> Ledger
where
    J: Send + Sync + 'static,
    F: Fn(usize, Arc<Vec<J>>, usize, Ledger) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Ledger> + Send + 'static,
{
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let bar = progress(jobs.len() as u64, label);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..connections.max(1) {
        let jobs = jobs.clone();
        let next = next.clone();
        let work = work.clone();
        let bar = bar.clone();
        set.spawn(async move {
            let mut ledger = Ledger::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() {
                    break;
                }
                ledger = work(w, jobs.clone(), i, ledger).await;
                bar.inc(1);
            }
            ledger
        });
    }
    let all = merge_all(set).await;
    bar.finish_and_clear();
    all
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Runs `work(worker, ledger)` in a loop on `connections` workers until
/// `duration` has passed; returns the merged ledger.
pub async fn run_for<F, Fut>(connections: usize, duration: Duration, label: &str, work: F) -> Ledger
where
    F: Fn(usize, Ledger) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Ledger> + Send + 'static,
{
    let deadline = Instant::now() + duration;
    let bar = progress(duration.as_secs().max(1), label);
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            t.tick().await;
            loop {
                t.tick().await;
                bar.inc(1);
            }
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for w in 0..connections.max(1) {
        let work = work.clone();
        set.spawn(async move {
            let mut ledger = Ledger::default();
            while Instant::now() < deadline {
                ledger = work(w, ledger).await;
            }
            ledger
        });
    }
    let all = merge_all(set).await;
    ticker.abort();
    bar.finish_and_clear();
    all
}

/// Waits for every worker and merges their ledgers.
async fn merge_all(mut set: tokio::task::JoinSet<Ledger>) -> Ledger {
    let mut all = Ledger::default();
    while let Some(r) = set.join_next().await {
        if let Ok(l) = r {
            all.merge(l);
        }
    }
    all
}
