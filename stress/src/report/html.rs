//! The `--html` page: the human summary and three inline SVG charts (latency
//! over time, throughput over time, the purchase latency histogram), with the
//! JSON summary embedded. A `--chaos` fault is marked on the two timelines
//! (when it struck, and when PostgreSQL was back). No scripts run and nothing
//! is fetched, so the page opens offline.

use std::fmt::Write as _;

use super::{text, Summary};

/// A self-contained HTML page (no scripts, no network) with the summary and
/// three charts: latency over time, throughput over time, latency histogram.
pub fn html(s: &Summary) -> String {
    let marks = fault_marks(s);
    let latency = line_chart(
        "Latency over time (ms)",
        &marks,
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
        &marks,
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

/// The fault's moments on the timeline's clock: (seconds, label).
fn fault_marks(s: &Summary) -> Vec<(f64, String)> {
    let Some(c) = &s.chaos else {
        return Vec::new();
    };
    let at = c.struck_at_secs - s.measured_from_secs;
    let mut marks = vec![(at, c.kind.to_string())];
    if let Some(down) = c.db_down_secs {
        marks.push((at + down, "PostgreSQL back".to_string()));
    }
    marks
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

fn line_chart(title: &str, marks: &[(f64, String)], series: &[Series]) -> String {
    let xmax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .chain(marks.iter().map(|m| m.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9);
    let mut svg = frame(title, xmax, ymax, "s");
    for (i, (t, label)) in marks.iter().enumerate() {
        let x = PAD + t.max(0.0) / xmax * (W - 2.0 * PAD);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{PAD}\" x2=\"{x:.1}\" y2=\"{b}\" stroke=\"#805ad5\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"11\" fill=\"#805ad5\">{}</text>",
            escape(label),
            b = H - PAD,
            tx = x + 3.0,
            ty = PAD + 12.0 + 14.0 * i as f64,
        );
    }
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
