//! What a run tells its reader: a summary table on stdout, `--json` for
//! machines and `--html` for a self-contained page with charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Kind;
use crate::scenario::Run;
use crate::verify::Violation;

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
    pub requests: u64,
    pub requests_per_sec: f64,
    pub purchases_created: u64,
    pub purchases_per_sec: f64,
    /// From the first purchase to the 201 that took the last unit, when the
    /// (first) sale sold out.
    pub time_to_sell_out_secs: Option<f64>,
    /// Units sold per second until the sale sold out (stock / time to sell out).
    pub sell_out_rate_per_sec: Option<f64>,
    pub unknown_outcomes: u64,
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

/// Builds the summary of a run and its violations.
pub fn summarize(run: &Run, violations: Vec<Violation>) -> Summary {
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
        let mine: Vec<_> = run
            .ledger
            .successes
            .iter()
            .filter(|s| s.sale_id == sale.id)
            .collect();
        let first_sent = run
            .ledger
            .samples
            .iter()
            .filter(|s| matches!(s.kind, Kind::Purchase | Kind::PurchaseOther))
            .map(|s| s.sent_us)
            .min()?;
        (mine.len() as i64 == sale.stock)
            .then(|| mine.iter().map(|s| s.done_us).max())
            .flatten()
            .map(|last| (last.saturating_sub(first_sent)) as f64 / 1e6)
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
        requests: measured.len() as u64,
        requests_per_sec: measured.len() as f64 / secs,
        purchases_created: created.len() as u64,
        purchases_per_sec: created.len() as f64 / secs,
        sell_out_rate_per_sec: time_to_sell_out_secs
            .zip(run.sales.first())
            .filter(|(t, _)| *t > 0.0)
            .map(|(t, sale)| sale.stock as f64 / t),
        time_to_sell_out_secs,
        unknown_outcomes: run.ledger.unknown.len() as u64,
        latency,
        answers,
        timeline,
        purchase_histogram,
    }
}

/// The human summary.
pub fn text(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario   {}  {}", s.scenario, s.params);
    let _ = writeln!(o, "against    {}", s.environment);
    let _ = writeln!(o, "duration   {:.2} s", s.duration_secs);
    let _ = writeln!(
        o,
        "requests   {}  ({:.0}/s)",
        s.requests, s.requests_per_sec
    );
    let _ = writeln!(
        o,
        "purchases  {} created  ({:.0}/s)",
        s.purchases_created, s.purchases_per_sec
    );
    if let Some(t) = s.time_to_sell_out_secs {
        let rate = s.sell_out_rate_per_sec.unwrap_or(0.0);
        let _ = writeln!(
            o,
            "sold out   in {t:.3} s  ({rate:.0} units/s while stock lasted)"
        );
    }
    let _ = writeln!(
        o,
        "unknown    {} outcome(s) (timeouts, lost connections)",
        s.unknown_outcomes
    );
    let _ = writeln!(
        o,
        "\nlatency (ms)   count      p50      p90      p99    p99.9      max"
    );
    for l in &s.latency {
        let _ = writeln!(
            o,
            "{:<10} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            l.kind, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
    let _ = writeln!(o, "\nanswers");
    for a in &s.answers {
        let status = if a.status == 0 {
            "none".to_string()
        } else {
            a.status.to_string()
        };
        let _ = writeln!(
            o,
            "{:<10} {:>5} {:<22} {:>9}",
            a.kind,
            status,
            a.code.as_deref().unwrap_or("-"),
            a.count
        );
    }
    let _ = writeln!(o);
    if s.violations.is_empty() {
        let _ = writeln!(o, "verdict    PASS: every invariant held");
    } else {
        let _ = writeln!(o, "verdict    FAIL: {} violation(s)", s.violations.len());
        for v in &s.violations {
            let _ = writeln!(o, "  - {}: {}", v.rule, v.detail);
        }
    }
    o
}

/// A self-contained HTML page (no scripts, no network) with the summary and
/// three charts: latency over time, throughput over time, latency histogram.
pub fn html(s: &Summary) -> String {
    let latency = line_chart(
        "Latency over time (ms)",
        &[
            (
                "p50",
                "#2b6cb0",
                s.timeline.iter().map(|x| (x.t_secs, x.p50_ms)).collect(),
            ),
            (
                "p99",
                "#c53030",
                s.timeline.iter().map(|x| (x.t_secs, x.p99_ms)).collect(),
            ),
        ],
    );
    let throughput = line_chart(
        "Throughput over time (per second)",
        &[
            (
                "requests",
                "#2f855a",
                s.timeline
                    .iter()
                    .map(|x| (x.t_secs, x.requests_per_sec))
                    .collect(),
            ),
            (
                "purchases created",
                "#b7791f",
                s.timeline
                    .iter()
                    .map(|x| (x.t_secs, x.created_per_sec))
                    .collect(),
            ),
        ],
    );
    let histogram = bar_chart(
        "Purchase latency histogram (count per bucket, upper bound in ms)",
        &s.purchase_histogram
            .iter()
            .filter(|(_, c)| *c > 0)
            .map(|(ms, c)| (format!("{ms:.1}"), *c as f64))
            .collect::<Vec<_>>(),
    );
    let json = serde_json::to_string(s)
        .unwrap_or_default()
        .replace("</", "<\\/");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>flashsale stress: {scenario}</title>
<style>body{{font:14px/1.4 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#1a202c}}
pre{{background:#f7fafc;padding:1em;overflow:auto}} .pass{{color:#2f855a}} .fail{{color:#c53030}} svg{{display:block;margin:1em 0}}</style>
</head><body><h1>flashsale stress: {scenario} <span class=\"{verdict}\">{verdict_up}</span></h1>
<pre>{summary}</pre>{latency}{throughput}{histogram}
<script type=\"application/json\" id=\"data\">{json}</script></body></html>",
        scenario = s.scenario,
        verdict = s.verdict,
        verdict_up = s.verdict.to_uppercase(),
        summary = escape(&text(s)),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const W: f64 = 900.0;
const H: f64 = 260.0;
const PAD: f64 = 50.0;

/// One line of a chart: a name, a colour and its points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

fn line_chart(title: &str, series: &[Series]) -> String {
    let xmax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9);
    let mut svg = frame(title, xmax, ymax, "s");
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    PAD + x / xmax * (W - 2.0 * PAD),
                    H - PAD - y / ymax * (H - 2.0 * PAD)
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            path.join(" "),
            W - PAD - 140.0,
            PAD + 16.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let ymax = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let mut svg = frame(title, 0.0, ymax, "");
    let n = bars.len().max(1) as f64;
    let bw = (W - 2.0 * PAD) / n;
    for (i, (label, y)) in bars.iter().enumerate() {
        let h = y / ymax * (H - 2.0 * PAD);
        let x = PAD + i as f64 * bw;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4a5568\"><title>≤ {} ms: {y}</title></rect>",
            H - PAD - h,
            (bw - 1.0).max(1.0),
            escape(label)
        );
        if bars.len() <= 24 || i % (bars.len() / 12).max(1) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + bw / 2.0,
                H - PAD + 14.0,
                escape(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn frame(title: &str, xmax: f64, ymax: f64, xunit: &str) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\">\
         <text x=\"{PAD}\" y=\"20\" font-weight=\"bold\">{t}</text>\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#718096\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#718096\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{ymax:.1}</text>\
         <text x=\"{lx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        t = escape(title),
        b = H - PAD,
        r = W - PAD,
        lx = PAD - 4.0,
        ty = PAD + 4.0,
    );
    if xmax > 0.0 {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{xmax:.1} {xunit}</text>",
            W - PAD,
            H - PAD + 14.0
        );
    }
    svg
}
