//! What a run tells its reader: a summary table on stdout, `--json` for
//! machines and `--html` for a self-contained page with charts.
//!
//! The [`Summary`] is built here from a run's ledger; the text and the HTML
//! are two views of it, in `text` and `html`, and the JSON is its serde form.

mod html;
mod text;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::chaos::ChaosFacts;
use crate::load::Kind;
use crate::scenario::Run;
use crate::verify::catalog::CartFacts;
use crate::verify::deadlocks::Deadlocks;
use crate::verify::during::Sampling;
use crate::verify::payments::PaymentFacts;
use crate::verify::{Tally, Violation};

pub use html::html;
pub use text::text;

/// Latency percentiles of one kind of request, in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub kind: &'static str,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// How often one answer came back.
#[derive(Debug, Serialize)]
pub struct AnswerRow {
    pub kind: &'static str,
    /// 0: no answer (timeout or lost connection).
    pub status: u16,
    pub code: Option<String>,
    pub count: u64,
}

/// One slice of the run's timeline.
#[derive(Debug, Serialize)]
pub struct Slice {
    pub t_secs: f64,
    pub requests_per_sec: f64,
    pub created_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: &'static str,
    pub params: serde_json::Value,
    pub environment: String,
    pub verdict: &'static str,
    pub violations: Vec<Violation>,
    pub duration_secs: f64,
    /// Seconds into the load where the measurements (and the timeline) start.
    pub measured_from_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Purchases answered 201. With a hold, units whose hold expired may be
    /// won again, so this may exceed the units sold (`tally`).
    pub purchases_created: u64,
    pub purchases_per_sec: f64,
    /// What the run's sales hold at the end (with the database reachable).
    pub tally: Option<Tally>,
    /// The invariants sampled during the run (with the database reachable).
    pub sampling: Option<Sampling>,
    /// From the first purchase to the 201 that took the last unit, when the
    /// (first) sale sold out before any of its holds could have expired.
    pub time_to_sell_out_secs: Option<f64>,
    /// Units sold per second until the sale sold out (stock / time to sell out).
    pub sell_out_rate_per_sec: Option<f64>,
    /// Purchases sent and then cut, or timed out, before their answer.
    pub unknown_outcomes: u64,
    /// Orders the buyer learned of only by `already_purchased` after `busy`.
    pub told_late: u64,
    /// Connections refused (nothing sent), each request sent on to the next
    /// instance.
    pub refused_connections: u64,
    /// Requests every instance refused.
    pub unreachable: u64,
    /// The fault struck mid-run and the recovery (`--chaos`).
    pub chaos: Option<ChaosFacts>,
    /// Deadlocks before and after the run (with the database reachable).
    pub deadlocks: Option<Deadlocks>,
    /// What holds and payments came to (sales with a hold, the database
    /// reachable).
    pub payments: Option<PaymentFacts>,
    /// What the catalog's books came to (the `cart` scenario).
    pub cart: Option<CartFacts>,
    /// What the waiting room came to (the `queue` scenario).
    pub queue: Option<crate::verify::queue::QueueFacts>,
    /// With `--pooler`: the server connections PgBouncer held.
    pub pooler: Option<crate::verify::pooler::PoolerFacts>,
    /// With `--replica`: who served the reads, and the replay lag.
    pub replica: Option<crate::verify::replica::ReplicaFacts>,
    pub latency: Vec<LatencyRow>,
    pub answers: Vec<AnswerRow>,
    pub timeline: Vec<Slice>,
    /// Purchase latency histogram: (upper bound in ms, count).
    pub purchase_histogram: Vec<(f64, u64)>,
}

fn hist() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Builds the summary of a run, its violations, and what the database held.
pub fn summarize(
    run: &Run,
    violations: Vec<Violation>,
    sampling: Option<Sampling>,
    tally: Option<Tally>,
) -> Summary {
    let from = run.measure_from_us;
    let measured: Vec<_> = run
        .ledger
        .samples
        .iter()
        .filter(|s| s.sent_us >= from)
        .collect();
    let created: Vec<_> = run
        .ledger
        .successes
        .iter()
        .filter(|s| s.done_us >= from)
        .collect();
    let secs = run.elapsed.as_secs_f64().max(1e-6);

    let mut by_kind: BTreeMap<Kind, Histogram<u64>> = BTreeMap::new();
    let mut answers: BTreeMap<(Kind, u16, Option<String>), u64> = BTreeMap::new();
    for s in &measured {
        let _ = by_kind
            .entry(s.kind)
            .or_insert_with(hist)
            .record(s.latency_us.max(1));
        *answers
            .entry((s.kind, s.status, s.code.clone()))
            .or_default() += 1;
    }
    let latency = by_kind
        .iter()
        .map(|(k, h)| LatencyRow {
            kind: k.name(),
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
        .collect();
    let answers = answers
        .into_iter()
        .map(|((kind, status, code), count)| AnswerRow {
            kind: kind.name(),
            status,
            code,
            count,
        })
        .collect();

    let time_to_sell_out_secs = run.sales.first().and_then(|sale| {
        let mut done: Vec<u64> = run
            .ledger
            .successes
            .iter()
            .filter(|s| s.sale_id == sale.id)
            .map(|s| s.done_us)
            .collect();
        done.sort_unstable();
        let first_sent = run
            .ledger
            .samples
            .iter()
            .filter(|s| matches!(s.kind, Kind::Purchase | Kind::PurchaseOther))
            .map(|s| s.sent_us)
            .min()?;
        // Every purchase is of one unit: the stock-th 201 took the last one,
        // unless a hold ran out before it (at least hold_secs after the first
        // purchase was sent), and then the stock never ran out this way.
        let last = done.get(usize::try_from(sale.stock).ok()?.checked_sub(1)?)?;
        let took = last.saturating_sub(first_sent);
        (sale.hold_secs == 0 || took < sale.hold_secs as u64 * 1_000_000)
            .then_some(took as f64 / 1e6)
    });

    // Timeline in about 100 slices of at least 100 ms.
    let slice_us = ((run.elapsed.as_micros() as u64) / 100).max(100_000);
    let mut slices: BTreeMap<u64, (u64, u64, Histogram<u64>)> = BTreeMap::new();
    for s in &measured {
        let e = slices
            .entry((s.sent_us - from) / slice_us)
            .or_insert_with(|| (0, 0, hist()));
        e.0 += 1;
        let _ = e.2.record(s.latency_us.max(1));
    }
    for c in &created {
        slices
            .entry((c.done_us.saturating_sub(from)) / slice_us)
            .or_insert_with(|| (0, 0, hist()))
            .1 += 1;
    }
    let per_sec = 1e6 / slice_us as f64;
    let timeline = slices
        .into_iter()
        .map(|(i, (n, c, h))| Slice {
            t_secs: (i * slice_us) as f64 / 1e6,
            requests_per_sec: n as f64 * per_sec,
            created_per_sec: c as f64 * per_sec,
            p50_ms: if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(0.5))
            },
            p99_ms: if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(0.99))
            },
        })
        .collect();

    let purchase_histogram = by_kind
        .get(&Kind::Purchase)
        .map(|h| {
            h.iter_log(500, 2.0)
                .map(|v| (ms(v.value_iterated_to()), v.count_since_last_iteration()))
                .collect()
        })
        .unwrap_or_default();

    Summary {
        scenario: run.scenario,
        params: run.params.clone(),
        environment: run.environment.clone(),
        verdict: if violations.is_empty() {
            "pass"
        } else {
            "fail"
        },
        violations,
        duration_secs: secs,
        measured_from_secs: from as f64 / 1e6,
        requests: measured.len() as u64,
        requests_per_sec: measured.len() as f64 / secs,
        purchases_created: created.len() as u64,
        purchases_per_sec: created.len() as f64 / secs,
        tally,
        sampling,
        sell_out_rate_per_sec: time_to_sell_out_secs
            .zip(run.sales.first())
            .filter(|(t, _)| *t > 0.0)
            .map(|(t, sale)| sale.stock as f64 / t),
        time_to_sell_out_secs,
        unknown_outcomes: run.ledger.unknown.len() as u64,
        told_late: run.ledger.told_late.len() as u64,
        refused_connections: run.ledger.refused,
        unreachable: run.ledger.unreachable,
        chaos: None,
        deadlocks: None,
        payments: None,
        cart: None,
        queue: None,
        pooler: None,
        replica: None,
        latency,
        answers,
        timeline,
        purchase_histogram,
    }
}
