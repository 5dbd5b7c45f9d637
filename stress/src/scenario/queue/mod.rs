//! `queue`: a waiting-room sale. First a burst of `/healthz` from the same
//! connections, the floor the joins are compared with. Then the pre-queue
//! opens: `--bots` percent of the `--pre` shoppers join in its first
//! millisecond, three times each, as bots hammer; the others join at
//! uniformly random moments until a second before the start. After the start
//! the `--late` shoppers join at random moments within two seconds, the bots
//! try to buy at once whatever their place, and every pre-queue shopper reads
//! its ticket once for its place. Then everyone but the `--walk-away`
//! percent buys when the sale's live status shows its place admitted, in
//! place order, until the status shows the stock gone. Last, shoppers still
//! in line read their tickets, which must say `sold_out`.
//!
//! What each shopper saw is kept in a [`QueueRun`] for the verification
//! (`verify::queue`), which checks it against the database.

mod phases;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;

use super::{max_end, Common, Run};
use crate::environment::Environment;
use crate::load::{run_jobs, Kind, Load, TicketEnd};
use crate::provision::{self, Buyer, SaleSpec};
use phases::{
    code_of, drawn_places, join_until_final, push, shared, take, turns, watch_status, Shared,
};

/// Joins each bot sends back to back.
const BOT_JOINS: usize = 3;
/// Late joiners arrive within this long after the start.
const LATE_WINDOW_MS: u64 = 2000;
/// Shoppers still in line whose tickets are read after the sell-out.
const SOLD_OUT_READS: usize = 200;

/// The waiting room and its shoppers.
#[derive(Clone, Copy, Debug)]
pub struct QueueSpec {
    pub pre: usize,
    pub late: usize,
    pub bots: u32,
    pub stock: i64,
    pub admit_per_sec: i64,
    pub admission_secs: i64,
    pub lead_secs: u64,
    pub walk_away: u32,
    pub health: usize,
}

/// The `queue` command's options.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct QueueArgs {
    /// Shoppers who join before the start.
    #[arg(long, default_value_t = 5000)]
    pub pre: usize,
    /// Shoppers who join in the two seconds after the start.
    #[arg(long, default_value_t = 500)]
    pub late: usize,
    /// Percent of the pre-queue that joins in the queue's first millisecond,
    /// three times each, and tries to buy at the start whatever its place.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub bots: u32,
    #[arg(long, default_value_t = 1000)]
    pub stock: i64,
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub admit_per_sec: i64,
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i64).range(10..=3600))]
    pub admission_secs: i64,
    /// Seconds the pre-queue is open before the start.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lead_secs: u64,
    /// Percent of admitted shoppers who never buy (their admission lapses).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub walk_away: u32,
    /// `/healthz` requests fired first, the floor the joins are compared with.
    #[arg(long, default_value_t = 20_000)]
    pub health: usize,
}

impl QueueArgs {
    pub fn spec(&self) -> QueueSpec {
        QueueSpec {
            pre: self.pre,
            late: self.late,
            bots: self.bots,
            stock: self.stock,
            admit_per_sec: self.admit_per_sec,
            admission_secs: self.admission_secs,
            lead_secs: self.lead_secs,
            walk_away: self.walk_away,
            health: self.health,
        }
    }
}

/// One join as the shopper saw it.
#[derive(Clone, Debug)]
pub struct Joined {
    pub user_id: i64,
    /// Microseconds from the queue's opening to sending, and to the answer.
    pub sent_us: u64,
    pub done_us: u64,
    /// The place the answer gave (none in the pre-queue).
    pub position: Option<i64>,
}

/// A shopper's purchase on its turn.
#[derive(Clone, Debug)]
pub struct Turn {
    pub user_id: i64,
    pub place: i64,
    /// The answer's code, or `created`.
    pub code: String,
    /// Microseconds into the run when its last try was sent.
    pub asked_us: u64,
}

/// What the `queue` scenario saw, for the verification.
#[derive(Clone, Debug, Default)]
pub struct QueueRun {
    pub sale_id: i64,
    pub stock: i64,
    pub admit_per_sec: i64,
    /// Shoppers whose join answered before the start.
    pub pre: Vec<Joined>,
    /// Shoppers who joined after the draw, with the place each was given.
    pub late: Vec<Joined>,
    /// Of them, joins meant for the pre-queue that were answered after the
    /// draw (the servers behind the schedule).
    pub overran: usize,
    /// Shoppers who tried to buy on their turn.
    pub buys: Vec<Turn>,
    /// Bots' purchases at the start: (user, answer code or `created`).
    pub bot_buys: Vec<(i64, String)>,
    /// Tickets read after the sell-out: (user, state).
    pub after_sold_out: Vec<(i64, String)>,
    /// Joins answered per second in the bots' burst (everyone's), and
    /// `/healthz` per second from the same connections just before.
    pub joins_per_sec: f64,
    pub health_per_sec: f64,
    /// The bots' first joins per second (each made a ticket), counted until
    /// the last of them was answered.
    pub first_joins_per_sec: f64,
    /// Joins answered in the burst (from the queue's opening until the last
    /// bot's last join was answered), of them the bots', and its duration.
    pub burst_joins: u64,
    pub bot_joins: u64,
    pub burst_secs: f64,
}

/// The `queue` scenario; see the module docs.
pub async fn queue(env: &Environment, c: &Common, spec: QueueSpec) -> anyhow::Result<Run> {
    let people = provision::buyers(env, spec.pre + spec.late, "qu").await?;
    let (pre, late) = people.split_at(spec.pre);
    let admin = provision::admin_token(env, &c.admin).await?;
    let mut load = Load::for_env(env, c)?;

    // The floor: `/healthz` from the same connections, in the same sitting.
    load.reset_clock();
    let health = {
        let load = load.clone();
        run_jobs(
            c.connections,
            vec![(); spec.health],
            "healthz",
            move |w, _, _, mut l| {
                let load = load.clone();
                async move {
                    load.get(w, "/healthz", Kind::Health, &mut l).await;
                    l
                }
            },
        )
        .await
    };
    let health_per_sec = spec.health as f64 / max_end(&health).as_secs_f64().max(1e-6);

    let lead_ms = spec.lead_secs as i64 * 1000;
    let sale = provision::sale(
        env,
        &admin,
        SaleSpec {
            room: Some((spec.admit_per_sec, spec.admission_secs)),
            ..SaleSpec::new(spec.stock, lead_ms, c.hold_secs)
        },
    )
    .await?;
    let sale_id = sale.id;
    let to_start_ms = (sale.starts_at - provision::server_time(env).await?)
        .num_milliseconds()
        .max(0) as u64;
    let mut rng = StdRng::seed_from_u64(sale_id as u64);
    let bots = pre.len() * spec.bots as usize / 100;
    // (buyer, moment in ms, is a bot), in the order of their moments.
    let mut plan: Vec<(Buyer, u64, bool)> = pre
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let at = if i < bots {
                0
            } else {
                rng.gen_range(0..to_start_ms.saturating_sub(1000).max(1))
            };
            (b.clone(), at, i < bots)
        })
        .collect();
    plan.sort_by_key(|p| p.1);

    // The pre-queue.
    load.reset_clock();
    let pre_joins: Shared<Joined> = shared();
    // Each bot's joins, and when its first and its last were answered.
    let burst: Shared<(u64, u64, u64)> = shared();
    let mut ledger = {
        let (load, pre_joins, burst) = (load.clone(), pre_joins.clone(), burst.clone());
        run_jobs(
            c.connections,
            plan,
            "pre-queue",
            move |w, jobs: Arc<Vec<(Buyer, u64, bool)>>, i, mut l| {
                let (load, pre_joins, burst) = (load.clone(), pre_joins.clone(), burst.clone());
                async move {
                    let (buyer, at, bot) = &jobs[i];
                    let wait = Duration::from_millis(*at).saturating_sub(load.elapsed());
                    tokio::time::sleep(wait).await;
                    let sent_us = load.elapsed().as_micros() as u64;
                    let tries = if *bot { BOT_JOINS } else { 1 };
                    // The first answer says where the ticket was made.
                    let end = join_until_final(&load, w, buyer, sale_id, &mut l).await;
                    let first_us = load.elapsed().as_micros() as u64;
                    for _ in 1..tries {
                        join_until_final(&load, w, buyer, sale_id, &mut l).await;
                    }
                    let done_us = load.elapsed().as_micros() as u64;
                    if *bot {
                        push(&burst, (tries as u64, first_us, done_us));
                    }
                    if let TicketEnd::Ticket { position, .. } = end {
                        push(
                            &pre_joins,
                            Joined {
                                user_id: buyer.id,
                                sent_us,
                                done_us: first_us,
                                position,
                            },
                        );
                    }
                    l
                }
            },
        )
        .await
    };
    let burst = take(&burst);
    let bot_joins: u64 = burst.iter().map(|b| b.0).sum();
    let burst_end_us = burst.iter().map(|b| b.2).max().unwrap_or(0);
    let burst_secs = burst_end_us as f64 / 1e6;
    // Every join answered (200 or 201) within the burst: the bots' and those
    // of shoppers whose moment fell in it, served side by side.
    let burst_joins = ledger
        .samples
        .iter()
        .filter(|s| s.kind == Kind::Join && (s.status == 200 || s.status == 201))
        .filter(|s| s.sent_us + s.latency_us <= burst_end_us)
        .count() as u64;
    let first_secs = burst.iter().map(|b| b.1).max().unwrap_or(0) as f64 / 1e6;
    let first_joins_per_sec = burst.len() as f64 / first_secs.max(1e-6);

    // The start: late joiners and the bots' purchases, while the pre-queue
    // learns its places and buys on its turns.
    super::until_open(env, &sale).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let status = watch_status(env.targets[0].clone(), sale_id, stop_rx);
    let start_ms = load.elapsed().as_millis() as u64;
    let late_joins: Shared<Joined> = shared();
    let mut late_plan: Vec<(Buyer, u64)> = late
        .iter()
        .map(|b| (b.clone(), start_ms + rng.gen_range(0..LATE_WINDOW_MS)))
        .collect();
    late_plan.sort_by_key(|x| x.1);
    let late_run = {
        let (load, late_joins) = (load.clone(), late_joins.clone());
        run_jobs(
            c.connections / 4 + 1,
            late_plan,
            "late",
            move |w, jobs: Arc<Vec<(Buyer, u64)>>, i, mut l| {
                let (load, late_joins) = (load.clone(), late_joins.clone());
                async move {
                    let (buyer, at) = &jobs[i];
                    tokio::time::sleep(Duration::from_millis(*at).saturating_sub(load.elapsed()))
                        .await;
                    let sent_us = load.elapsed().as_micros() as u64;
                    let end = join_until_final(&load, w, buyer, sale_id, &mut l).await;
                    let done_us = load.elapsed().as_micros() as u64;
                    if let TicketEnd::Ticket { position, .. } = end {
                        push(
                            &late_joins,
                            Joined {
                                user_id: buyer.id,
                                sent_us,
                                done_us,
                                position,
                            },
                        );
                    }
                    l
                }
            },
        )
    };
    let bot_buys: Shared<(i64, String)> = shared();
    let bot_run = {
        let (load, bot_buys) = (load.clone(), bot_buys.clone());
        let bots: Vec<Buyer> = pre[..bots].to_vec();
        run_jobs(
            c.connections / 4 + 1,
            bots,
            "bots buy",
            move |w, jobs: Arc<Vec<Buyer>>, i, mut l| {
                let (load, bot_buys) = (load.clone(), bot_buys.clone());
                async move {
                    let a = load
                        .purchase_until_final(w, &jobs[i], sale_id, 10, &mut l)
                        .await;
                    push(&bot_buys, (jobs[i].id, code_of(&a)));
                    l
                }
            },
        )
    };
    // Joins meant for the pre-queue but answered with a place came after the
    // draw (the servers fell behind the schedule): they are late joiners.
    let (pre_joins, overran): (Vec<Joined>, Vec<Joined>) = take(&pre_joins)
        .into_iter()
        .partition(|j| j.position.is_none());
    let joined: Vec<Buyer> = {
        let ids: std::collections::HashSet<i64> = pre_joins
            .iter()
            .chain(&overran)
            .map(|j| j.user_id)
            .collect();
        pre.iter()
            .filter(|b| ids.contains(&b.id))
            .cloned()
            .collect()
    };
    let (places, read) = drawn_places(env, &load, c.connections / 2 + 1, sale_id, &joined).await?;
    ledger.merge(read);
    let rate = spec.admit_per_sec as f64;
    let buys: Shared<Turn> = shared();
    let waiting: Shared<(Buyer, i64)> = shared();
    let mut walk = |line: Vec<(Buyer, i64)>| -> Vec<(Buyer, i64)> {
        line.into_iter()
            .filter(|_| rng.gen_range(0..100) >= spec.walk_away)
            .collect()
    };
    let pre_line = walk(places);
    let pre_turns = turns(
        &load,
        c.connections / 2 + 1,
        pre_line,
        &status,
        rate,
        sale_id,
        &buys,
        &waiting,
    );
    let (late_ledger, bot_ledger, turns_ledger) = tokio::join!(late_run, bot_run, pre_turns);
    ledger.merge(late_ledger);
    ledger.merge(bot_ledger);
    ledger.merge(turns_ledger);
    // The late joiners' turns come after the pre-queue's.
    let late_joins = take(&late_joins);
    let late_by_id: HashMap<i64, Buyer> = late.iter().map(|b| (b.id, b.clone())).collect();
    let mut late_line: Vec<(Buyer, i64)> = late_joins
        .iter()
        .filter_map(|j| Some((late_by_id.get(&j.user_id)?.clone(), j.position?)))
        .collect();
    late_line.sort_by_key(|x| x.1);
    let late_line = walk(late_line);
    let buy_run = turns(
        &load,
        c.connections,
        late_line,
        &status,
        rate,
        sale_id,
        &buys,
        &waiting,
    )
    .await;
    ledger.merge(buy_run);
    let _ = stop_tx.send(true);

    // Everyone still in line reads `sold_out` (a sample of them).
    let mut in_line = take(&waiting);
    in_line.truncate(SOLD_OUT_READS);
    let after: Shared<(i64, String)> = shared();
    let after_run = {
        let (load, after) = (load.clone(), after.clone());
        run_jobs(
            c.connections,
            in_line,
            "in line",
            move |w, jobs: Arc<Vec<(Buyer, i64)>>, i, mut l| {
                let (load, after) = (load.clone(), after.clone());
                async move {
                    if let TicketEnd::Ticket { state, .. } =
                        load.read_ticket(w, &jobs[i].0, sale_id, &mut l).await
                    {
                        push(&after, (jobs[i].0.id, state));
                    }
                    l
                }
            },
        )
        .await
    };
    ledger.merge(after_run);
    let elapsed = max_end(&ledger);
    let joins_per_sec = burst_joins as f64 / burst_secs.max(1e-6);
    let q = QueueRun {
        sale_id,
        stock: spec.stock,
        admit_per_sec: spec.admit_per_sec,
        pre: pre_joins,
        overran: overran.len(),
        late: late_joins.into_iter().chain(overran).collect(),
        buys: take(&buys),
        bot_buys: take(&bot_buys),
        after_sold_out: take(&after),
        joins_per_sec,
        health_per_sec,
        burst_joins,
        bot_joins,
        burst_secs,
        first_joins_per_sec,
    };
    Ok(Run {
        scenario: "queue",
        params: json!({"pre": spec.pre, "late": spec.late, "bots_percent": spec.bots, "stock": spec.stock,
                       "admit_per_sec": spec.admit_per_sec, "admission_secs": spec.admission_secs,
                       "lead_secs": spec.lead_secs, "walk_away_percent": spec.walk_away,
                       "health": spec.health, "connections": c.connections}),
        environment: env.describe(),
        elapsed,
        sales: vec![sale],
        ledger,
        measure_from_us: 0,
        queue: Some(Box::new(q)),
    })
}
