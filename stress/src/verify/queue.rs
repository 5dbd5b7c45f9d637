//! The waiting room's promises, checked after a `queue` run against the
//! database and what the shoppers saw ([`QueueRun`]):
//!
//! - every place 1..n is given exactly once, and everyone who joined before
//!   the start is placed ahead of everyone who joined after it;
//! - the draw does not follow the join order or the account: Spearman's ρ
//!   between either and the place, over the pre-queue, stays below
//!   [`rho_limit`] (0.02 from 50,000 tickets on, which chance alone keeps
//!   near 0.005; four standard deviations for smaller runs);
//! - late joiners are placed in arrival order: a join answered before
//!   another was sent has the earlier place;
//! - admission runs within 5% of `admit_per_sec`, measured between the
//!   admission steps' own database timestamps while stock lasted;
//! - no order without admission: every order is the one order of a ticket
//!   admitted before it, bought before its admission lapsed;
//! - the winners asked first: no shopper refused `sold_out` on its turn
//!   asked more than a quarter second before a winner did (the harness buys
//!   the moment it sees a place admitted, so this follows the line), and
//!   none was refused `not_admitted` on its turn;
//! - everyone still in line after the sell-out reads `sold_out`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{v, Violation};
use crate::scenario::QueueRun;

/// A shopper refused `sold_out` may have asked this much before a winner:
/// purchases sent this close together may be served in either order
/// (batches, instances).
pub const ASK_SLACK_US: u64 = 250_000;

/// The largest |ρ| accepted for a draw of `n` tickets.
pub fn rho_limit(n: usize) -> f64 {
    let sd = 1.0 / ((n.max(2) - 1) as f64).sqrt();
    (4.0 * sd).max(0.02)
}

/// Spearman's rank correlation of pairs of distinct values.
pub fn spearman(pairs: &[(i64, i64)]) -> f64 {
    fn ranks(v: Vec<i64>) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by_key(|&i| v[i]);
        let mut r = vec![0.0; v.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    }
    let n = pairs.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let a = ranks(pairs.iter().map(|p| p.0).collect());
    let b = ranks(pairs.iter().map(|p| p.1).collect());
    let d2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// What the waiting room came to, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueFacts {
    pub places: i64,
    pub pre_queue: usize,
    pub late: usize,
    /// Joins meant for the pre-queue answered after the draw.
    pub overran: usize,
    pub rho_join_order: f64,
    pub rho_account: f64,
    pub rho_limit: f64,
    pub admit_per_sec: i64,
    /// Places admitted per second while stock lasted, and over how long.
    pub admitted_per_sec: Option<f64>,
    pub admission_span_secs: f64,
    pub admitted_through: i64,
    pub orders: i64,
    pub orders_without_admission: i64,
    pub bot_purchases: usize,
    pub bot_purchases_created: usize,
    pub bot_purchases_not_admitted: usize,
    pub turns_taken: usize,
    pub turns_won: usize,
    pub turns_sold_out: usize,
    /// Shoppers refused `sold_out` on their turn although admitted in an
    /// earlier step than the last winner (they asked later).
    pub sold_out_admitted_before_a_winner: usize,
    pub joins_per_sec: f64,
    /// The bots' first joins (each made a ticket) per second.
    pub first_joins_per_sec: f64,
    pub health_per_sec: f64,
    /// Joins per second over `/healthz` per second (goal: at least 0.5).
    pub join_to_health: f64,
    /// Joins answered in the burst, of them the bots', and its duration.
    pub burst_joins: u64,
    pub bot_joins: u64,
    pub burst_secs: f64,
    pub sold_out_reads: usize,
}

#[derive(sqlx::FromRow)]
struct Ticket {
    user_id: i64,
    arrival: i64,
    position: Option<i32>,
    admitted_until: Option<DateTime<Utc>>,
}

/// Checks a `queue` run; returns the violations and the facts.
pub async fn check(db: &PgPool, q: &QueueRun) -> anyhow::Result<(Vec<Violation>, QueueFacts)> {
    let mut out = Vec::new();
    let tickets: Vec<Ticket> = sqlx::query_as(
        "select user_id, arrival, position, admitted_until from queue_ticket where sale_id = $1",
    )
    .bind(q.sale_id)
    .fetch_all(db)
    .await?;
    let (admitted_through, last_position, admission_secs): (i32, i32, i32) = sqlx::query_as(
        "select q.admitted_through, q.last_position, s.admission_secs
           from sale_queue q join sale s on s.id = q.sale_id where q.sale_id = $1",
    )
    .bind(q.sale_id)
    .fetch_one(db)
    .await?;
    // Every ticket is an account's (no foreign key keeps it: migrations/0009;
    // the sampler checks the tickets' lines and orders during the run).
    let strangers: i64 = sqlx::query_scalar(
        "select count(*) from queue_ticket t
          where t.sale_id = $1 and not exists (select 1 from app_user a where a.id = t.user_id)",
    )
    .bind(q.sale_id)
    .fetch_one(db)
    .await?;
    if strangers > 0 {
        out.push(v(
            "every_ticket_is_an_accounts",
            format!("{strangers} ticket(s) of users who have no account"),
        ));
    }
    let by_user: HashMap<i64, &Ticket> = tickets.iter().map(|t| (t.user_id, t)).collect();
    let place = |u: i64| by_user.get(&u).and_then(|t| t.position).map(i64::from);

    // Every place once.
    let mut places: Vec<i64> = tickets
        .iter()
        .filter_map(|t| t.position.map(i64::from))
        .collect();
    places.sort_unstable();
    let unplaced = tickets.len() - places.len();
    if unplaced > 0
        || places.iter().enumerate().any(|(i, p)| *p != i as i64 + 1)
        || places.len() != last_position as usize
    {
        out.push(v(
            "every_place_given_once",
            format!(
                "{} tickets, {unplaced} without a place, places not exactly 1..{last_position}",
                tickets.len()
            ),
        ));
    }
    // The pre-queue ahead of the late joiners.
    let pre_places: Vec<i64> = q.pre.iter().filter_map(|j| place(j.user_id)).collect();
    let late_places: Vec<i64> = q.late.iter().filter_map(|j| place(j.user_id)).collect();
    if let (Some(a), Some(b)) = (pre_places.iter().max(), late_places.iter().min()) {
        if a >= b {
            out.push(v(
                "pre_queue_ahead_of_late_joiners",
                format!("pre-queue place {a} behind late place {b}"),
            ));
        }
    }
    for j in &q.late {
        if j.position.is_some() && j.position != place(j.user_id) {
            out.push(v(
                "places_never_change",
                format!(
                    "user {} was told place {:?}, holds {:?}",
                    j.user_id,
                    j.position,
                    place(j.user_id)
                ),
            ));
            break;
        }
    }
    // The draw.
    let pre_set: std::collections::HashSet<i64> = q.pre.iter().map(|j| j.user_id).collect();
    let drawn: Vec<&Ticket> = tickets
        .iter()
        .filter(|t| pre_set.contains(&t.user_id) && t.position.is_some())
        .collect();
    let pos = |t: &Ticket| i64::from(t.position.unwrap_or(0));
    let rho_join = spearman(
        &drawn
            .iter()
            .map(|t| (t.arrival, pos(t)))
            .collect::<Vec<_>>(),
    );
    let rho_user = spearman(
        &drawn
            .iter()
            .map(|t| (t.user_id, pos(t)))
            .collect::<Vec<_>>(),
    );
    let limit = rho_limit(drawn.len());
    for (what, rho) in [("join order", rho_join), ("account", rho_user)] {
        if rho.abs() >= limit {
            out.push(v(
                "the_draw_is_random",
                format!(
                    "rho between {what} and place is {rho:.4} over {} tickets (limit {limit:.4})",
                    drawn.len()
                ),
            ));
        }
    }
    // Late joiners in arrival order: any join answered before another was
    // sent holds the earlier place.
    let mut late: Vec<(u64, u64, i64)> = q
        .late
        .iter()
        .filter_map(|j| Some((j.sent_us, j.done_us, place(j.user_id)?)))
        .collect();
    let mut by_done = late.clone();
    by_done.sort_by_key(|x| x.1);
    late.sort_by_key(|x| x.0);
    let (mut k, mut max_before) = (0, 0);
    for (sent, _, p) in &late {
        while k < by_done.len() && by_done[k].1 < *sent {
            max_before = max_before.max(by_done[k].2);
            k += 1;
        }
        if max_before > *p {
            out.push(v(
                "late_joiners_in_arrival_order",
                format!(
                    "place {p} given to a join sent after the one placed {max_before} was answered"
                ),
            ));
            break;
        }
    }
    // The admission rate between the steps' own timestamps, while stock lasted.
    let sold_out_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "select max(created_at) from purchase_order where sale_id = $1 and (select remaining from sale where id = $1) = 0",
    )
    .bind(q.sale_id)
    .fetch_one(db)
    .await?;
    let mut steps: Vec<(DateTime<Utc>, i64)> = Vec::new();
    for t in &tickets {
        if let (Some(until), Some(p)) = (t.admitted_until, t.position) {
            steps.push((
                until - chrono::Duration::seconds(i64::from(admission_secs)),
                i64::from(p),
            ));
        }
    }
    steps.sort();
    let steps: Vec<(DateTime<Utc>, i64)> = steps
        .into_iter()
        .filter(|(at, _)| sold_out_at.is_none_or(|s| *at <= s))
        .collect();
    let (mut rate, mut span) = (None, 0.0);
    if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
        // The last place of the first step, to the last place of the last one.
        let first_end = steps
            .iter()
            .filter(|s| s.0 == first.0)
            .map(|s| s.1)
            .max()
            .unwrap_or(first.1);
        span = (last.0 - first.0).num_microseconds().unwrap_or(0) as f64 / 1e6;
        if span >= 1.0 {
            let r = (last.1 - first_end) as f64 / span;
            rate = Some(r);
            let off = (r - q.admit_per_sec as f64).abs() / q.admit_per_sec as f64;
            if off > 0.05 {
                out.push(v(
                    "admission_at_the_set_rate",
                    format!(
                        "{r:.1} places/s over {span:.2} s against {} set",
                        q.admit_per_sec
                    ),
                ));
            }
        }
    }
    // No order without admission.
    let (orders, unadmitted): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where not exists (
                    select 1 from queue_ticket t
                     where t.sale_id = o.sale_id and t.user_id = o.user_id and t.order_id = o.id
                       -- What the engine decides by: admitted until after
                       -- the purchase's transaction began...
                       and o.created_at < t.admitted_until
                       -- ...and used (by the clock, after the check) once
                       -- it was admitted. The order's created_at, the
                       -- transaction's start, may come before an admission
                       -- that committed while it waited for the lock.
                       and t.used_at >= t.admitted_until - make_interval(secs => $2)))
           from purchase_order o where o.sale_id = $1",
    )
    .bind(q.sale_id)
    .bind(admission_secs)
    .fetch_one(db)
    .await?;
    if unadmitted > 0 {
        out.push(v(
            "no_purchase_without_admission",
            format!("{unadmitted} of {orders} orders not bought on an admitted ticket in its time"),
        ));
    }
    // The winners asked first: no shopper refused `sold_out` on its turn had
    // asked more than `ASK_SLACK_US` before a winner asked. (Winners are
    // also counted by admission step: how many losers were admitted before
    // the last winner, which a slow shopper may be.)
    let won: Vec<u64> = q
        .buys
        .iter()
        .filter(|b| b.code == "created")
        .map(|b| b.asked_us)
        .collect();
    let lost: Vec<u64> = q
        .buys
        .iter()
        .filter(|b| b.code == "sold_out")
        .map(|b| b.asked_us)
        .collect();
    if let (Some(last_win), Some(first_loss)) = (won.iter().max(), lost.iter().min()) {
        if first_loss + ASK_SLACK_US < *last_win {
            out.push(v(
                "winners_asked_first",
                format!("a shopper asked {:.3} s into the run and was refused sold_out; one who asked at {:.3} s won", *first_loss as f64 / 1e6, *last_win as f64 / 1e6),
            ));
        }
    }
    let step_of = |u: i64| by_user.get(&u).and_then(|t| t.admitted_until);
    let last_win_step = q
        .buys
        .iter()
        .filter(|b| b.code == "created")
        .filter_map(|b| step_of(b.user_id))
        .max();
    let admitted_before_a_winner = q
        .buys
        .iter()
        .filter(|b| b.code == "sold_out")
        .filter(|b| {
            step_of(b.user_id)
                .zip(last_win_step)
                .is_some_and(|(l, w)| l < w)
        })
        .count();
    let wrongly = q.buys.iter().filter(|b| b.code == "not_admitted").count();
    if wrongly > 0 {
        out.push(v(
            "admitted_shoppers_may_buy",
            format!("{wrongly} shopper(s) refused not_admitted on their turn"),
        ));
    }
    let not_sold_out = q
        .after_sold_out
        .iter()
        .filter(|(_, s)| s != "sold_out")
        .count();
    if not_sold_out > 0 {
        out.push(v(
            "sold_out_reaches_the_line",
            format!(
                "{not_sold_out} of {} tickets in line read otherwise after the sell-out",
                q.after_sold_out.len()
            ),
        ));
    }
    let facts = QueueFacts {
        places: i64::from(last_position),
        pre_queue: drawn.len(),
        late: late_places.len(),
        overran: q.overran,
        rho_join_order: rho_join,
        rho_account: rho_user,
        rho_limit: limit,
        admit_per_sec: q.admit_per_sec,
        admitted_per_sec: rate,
        admission_span_secs: span,
        admitted_through: i64::from(admitted_through),
        orders,
        orders_without_admission: unadmitted,
        bot_purchases: q.bot_buys.len(),
        bot_purchases_created: q.bot_buys.iter().filter(|b| b.1 == "created").count(),
        bot_purchases_not_admitted: q.bot_buys.iter().filter(|b| b.1 == "not_admitted").count(),
        turns_taken: q.buys.len(),
        sold_out_admitted_before_a_winner: admitted_before_a_winner,
        turns_won: won.len(),
        turns_sold_out: lost.len(),
        joins_per_sec: q.joins_per_sec,
        first_joins_per_sec: q.first_joins_per_sec,
        health_per_sec: q.health_per_sec,
        join_to_health: q.joins_per_sec / q.health_per_sec.max(1e-9),
        burst_joins: q.burst_joins,
        bot_joins: q.bot_joins,
        burst_secs: q.burst_secs,
        sold_out_reads: q.after_sold_out.len(),
    };
    Ok((out, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_reads_order_and_its_absence() {
        let same: Vec<(i64, i64)> = (0..100).map(|i| (i, i * 3)).collect();
        assert!((spearman(&same) - 1.0).abs() < 1e-9);
        let reversed: Vec<(i64, i64)> = (0..100).map(|i| (i, -i)).collect();
        assert!((spearman(&reversed) + 1.0).abs() < 1e-9);
        // A fixed shuffle (a multiplicative permutation mod a prime) is near 0.
        let shuffled: Vec<(i64, i64)> = (0..10_007).map(|i| (i, (i * 7_919) % 10_007)).collect();
        assert!(
            spearman(&shuffled).abs() < rho_limit(10_007),
            "{}",
            spearman(&shuffled)
        );
        assert_eq!(rho_limit(50_000), 0.02);
        assert!(rho_limit(1000) > 0.1);
    }
}
