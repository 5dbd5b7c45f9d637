//! The invariants checked after every run, Jepsen-bank style: the database
//! and the answers the shoppers got must tell the same story. The answers are
//! checked here, the database in `database` (after the run) and `during`
//! (sampled while it runs), the catalog's books in `catalog`, and deadlocks
//! in `deadlocks`.
//!
//! An order is *live* while it holds its units (`pending_payment`, `paid`,
//! `confirmed`). With a sale's hold, a 201 may since have expired and its
//! units been sold again, so units sold are the live orders' units, never the
//! count of 201s.

pub mod catalog;
mod database;
pub mod deadlocks;
pub mod during;
pub mod payments;
pub mod pooler;
pub mod queue;
pub mod replica;

use std::collections::HashMap;

use serde::Serialize;

use crate::load::{is_documented, Kind, Ledger};
use crate::provision::SaleInfo;

pub use database::{check_database, lost_acknowledged, tally, Tally};

/// The statuses of a live order, as a SQL list.
pub const LIVE: &str = "('pending_payment', 'paid', 'confirmed')";

/// A broken promise, with what was found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    /// A short stable name of the rule, e.g. `sold_plus_remaining_is_stock`.
    pub rule: &'static str,
    pub detail: String,
}

pub(crate) fn v(rule: &'static str, detail: String) -> Violation {
    Violation { rule, detail }
}

/// Every answer must be documented, and no answer may be a 5xx.
pub fn check_answers(ledger: &Ledger) -> Vec<Violation> {
    let mut server_errors: HashMap<(Kind, u16), usize> = HashMap::new();
    let mut undocumented: HashMap<(Kind, u16, Option<String>), usize> = HashMap::new();
    for s in &ledger.samples {
        if s.status == 0 {
            continue; // no answer: counted as unknown, not as a wrong answer
        }
        if s.status >= 500 && !(s.status == 503 && s.code.as_deref() == Some("busy")) {
            *server_errors.entry((s.kind, s.status)).or_default() += 1;
        } else if !is_documented(s.kind, s.status, s.code.as_deref()) {
            *undocumented
                .entry((s.kind, s.status, s.code.clone()))
                .or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for ((kind, status), n) in server_errors {
        out.push(v(
            "no_server_errors",
            format!("{n} {} request(s) answered {status}", kind.name()),
        ));
    }
    for ((kind, status, code), n) in undocumented {
        out.push(v(
            "answers_are_documented",
            format!(
                "{n} {} request(s) answered {status} {:?}, which the API does not document",
                kind.name(),
                code
            ),
        ));
    }
    out.sort_by(|a, b| a.detail.cmp(&b.detail));
    out
}

/// The checks possible without the database, from the admin's live stats:
/// sold + remaining == stock, one live order per buyer, and no more live
/// orders than the 201s plus the unknown outcomes and the orders told late
/// (`busy`, then `already_purchased`). Without a hold no order
/// stops being live during a run, so then there are no fewer live orders than
/// 201s either; with one, an expired hold leaves a 201 without a live order.
pub async fn check_through_api(
    target: &str,
    admin_token: &str,
    sales: &[SaleInfo],
    ledger: &Ledger,
) -> anyhow::Result<Vec<Violation>> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for sale in sales {
        let s: serde_json::Value = client
            .get(format!("{target}/api/v1/admin/sales/{}/stats", sale.id))
            .bearer_auth(admin_token)
            .send()
            .await?
            .json()
            .await?;
        let get = |k: &str| s[k].as_i64().unwrap_or(-1);
        let (stock, sold, remaining, orders, buyers) = (
            get("stock"),
            get("sold"),
            get("remaining"),
            get("orders"),
            get("buyers"),
        );
        let id = sale.id;
        if sold + remaining != stock {
            out.push(v(
                "sold_plus_remaining_is_stock",
                format!("sale {id}: sold {sold} + remaining {remaining} != stock {stock}"),
            ));
        }
        if buyers != orders {
            out.push(v(
                "one_live_order_per_user",
                format!("sale {id}: {orders} orders from {buyers} buyers"),
            ));
        }
        let created = ledger.successes.iter().filter(|x| x.sale_id == id).count() as i64;
        let unknown = ledger.unknown.iter().filter(|x| x.0 == id).count() as i64
            + ledger.told_late.iter().filter(|x| x.0 == id).count() as i64;
        let fewest = if sale.hold_secs == 0 { created } else { 0 };
        if orders < fewest || orders > created + unknown {
            out.push(v(
                "orders_match_answers",
                format!("sale {id}: {orders} live orders, but {created} answers were 201 and {unknown} unknown"),
            ));
        }
    }
    Ok(out)
}
