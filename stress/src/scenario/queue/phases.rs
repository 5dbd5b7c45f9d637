//! The phases of the `queue` scenario that each shopper goes through: joining
//! until a final answer, the one reader of the sale's live status, learning
//! the drawn places, and buying on one's turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::environment::Environment;
use crate::load::{run_jobs, Attempt, Ledger, Load, TicketEnd};
use crate::provision::Buyer;

use super::Turn;

/// How often the harness reads the sale's live status (one reader for all
/// shoppers, standing in for the pages' event streams).
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// Pre-queue shoppers who read their ticket through the API after the draw
/// (with the database at hand; without it, all do).
const TICKET_READS: usize = 1000;

pub(super) type Shared<T> = Arc<Mutex<Vec<T>>>;

pub(super) fn shared<T>() -> Shared<T> {
    Arc::new(Mutex::new(Vec::new()))
}

pub(super) fn take<T>(s: &Shared<T>) -> Vec<T> {
    std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner()))
}

pub(super) fn push<T>(s: &Shared<T>, v: T) {
    s.lock().unwrap_or_else(|e| e.into_inner()).push(v);
}

/// Joins until a final answer (at most ten tries); the last answer.
pub(super) async fn join_until_final(
    load: &Load,
    w: usize,
    buyer: &Buyer,
    sale: i64,
    ledger: &mut Ledger,
) -> TicketEnd {
    let mut last = TicketEnd::Unknown;
    for _ in 0..10 {
        last = load.join_queue(w, buyer, sale, ledger).await;
        match &last {
            TicketEnd::Retry(wait) => tokio::time::sleep(*wait).await,
            TicketEnd::Unknown => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => return last,
        }
    }
    last
}

pub(super) fn code_of(a: &Attempt) -> String {
    match a {
        Attempt::Created => "created".into(),
        Attempt::Refused(c) => c.clone(),
        Attempt::Retry(_) => "retry".into(),
        Attempt::Unknown => "unknown".into(),
        Attempt::Broken => "broken".into(),
    }
}

/// The sale's `(admitted_through, remaining)` as its live status shows it,
/// read every [`WATCH_EVERY`] until `stop`.
pub(super) fn watch_status(
    target: String,
    sale: i64,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<(i64, i64)> {
    let (tx, rx) = watch::channel((0, i64::MAX));
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let url = format!("{target}/api/v1/sales/{sale}/status");
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    let through = v["admitted_through"].as_i64().unwrap_or(0);
                    let remaining = v["remaining"].as_i64().unwrap_or(i64::MAX);
                    tx.send_if_modified(|cur| {
                        let next = (through.max(cur.0), remaining);
                        std::mem::replace(cur, next) != next
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(WATCH_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    });
    rx
}

/// The pre-queue's places once drawn, in place order: read from the
/// database when the harness has it (so the turns start with the first
/// admission), then a sample of [`TICKET_READS`] shoppers reads its ticket
/// through the API, which must agree; without the database, every shopper
/// reads its ticket.
pub(super) async fn drawn_places(
    env: &Environment,
    load: &Load,
    connections: usize,
    sale_id: i64,
    joined: &[Buyer],
) -> anyhow::Result<(Vec<(Buyer, i64)>, Ledger)> {
    let by_id: HashMap<i64, Buyer> = joined.iter().map(|b| (b.id, b.clone())).collect();
    let mut places: Vec<(Buyer, i64)> = Vec::new();
    let readers: Vec<Buyer> = match &env.db {
        Some(db) => {
            loop {
                let drawn: Option<bool> = sqlx::query_scalar(
                    "select drawn_at is not null from sale_queue where sale_id = $1",
                )
                .bind(sale_id)
                .fetch_optional(db)
                .await?;
                if drawn == Some(true) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let rows: Vec<(i64, i32)> = sqlx::query_as(
                "select user_id, position from queue_ticket where sale_id = $1 and position is not null",
            )
            .bind(sale_id)
            .fetch_all(db)
            .await?;
            places = rows
                .into_iter()
                .filter_map(|(u, p)| Some((by_id.get(&u)?.clone(), i64::from(p))))
                .collect();
            joined.iter().take(TICKET_READS).cloned().collect()
        }
        None => joined.to_vec(),
    };
    let read: Shared<(Buyer, i64)> = shared();
    let ledger = {
        let (load, read) = (load.clone(), read.clone());
        run_jobs(
            connections,
            readers,
            "places",
            move |w, jobs: Arc<Vec<Buyer>>, i, mut l| {
                let (load, read) = (load.clone(), read.clone());
                async move {
                    for _ in 0..50 {
                        match load.read_ticket(w, &jobs[i], sale_id, &mut l).await {
                            TicketEnd::Ticket {
                                position: Some(p), ..
                            } => {
                                push(&read, (jobs[i].clone(), p));
                                break;
                            }
                            // Not drawn yet, or busy: a little later.
                            _ => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                    l
                }
            },
        )
        .await
    };
    let read = take(&read);
    if env.db.is_none() {
        places = read;
    } else {
        let drawn: HashMap<i64, i64> = places.iter().map(|(b, p)| (b.id, *p)).collect();
        if let Some((b, p)) = read.iter().find(|(b, p)| drawn.get(&b.id) != Some(p)) {
            anyhow::bail!(
                "user {}'s ticket reads place {p}, the database holds {:?}",
                b.id,
                drawn.get(&b.id)
            );
        }
    }
    places.sort_by_key(|x| x.1);
    Ok((places, ledger))
}

/// Each shopper of `line` (in place order) waits until the live status shows
/// its place admitted, and buys at once; or, once the status shows the stock
/// gone first, stays in line.
#[allow(clippy::too_many_arguments)]
pub(super) fn turns(
    load: &Load,
    connections: usize,
    line: Vec<(Buyer, i64)>,
    status: &watch::Receiver<(i64, i64)>,
    rate: f64,
    sale_id: i64,
    buys: &Shared<Turn>,
    waiting: &Shared<(Buyer, i64)>,
) -> impl std::future::Future<Output = Ledger> + use<> {
    let (load, buys, waiting, status) =
        (load.clone(), buys.clone(), waiting.clone(), status.clone());
    run_jobs(
        connections,
        line,
        "turns",
        move |w, jobs: Arc<Vec<(Buyer, i64)>>, i, mut l| {
            let (load, buys, waiting, mut status) =
                (load.clone(), buys.clone(), waiting.clone(), status.clone());
            async move {
                let (buyer, place) = &jobs[i];
                // The turn comes `place / admit_per_sec` after the start; a status
                // that stops moving gives up a minute after that.
                let patience = Duration::from_secs_f64(*place as f64 / rate + 60.0);
                let turn = match tokio::time::timeout(
                    patience,
                    status.wait_for(|(through, remaining)| through >= place || *remaining == 0),
                )
                .await
                {
                    Ok(Ok(s)) => s.0 >= *place,
                    _ => false,
                };
                if turn {
                    let a = load
                        .purchase_until_final(w, buyer, sale_id, 20, &mut l)
                        .await;
                    // When its last try was sent.
                    let asked_us = l.samples.last().map_or(0, |s| s.sent_us);
                    let code = code_of(&a);
                    let user_id = buyer.id;
                    push(
                        &buys,
                        Turn {
                            user_id,
                            place: *place,
                            code,
                            asked_us,
                        },
                    );
                } else {
                    push(&waiting, (buyer.clone(), *place));
                }
                l
            }
        },
    )
}
