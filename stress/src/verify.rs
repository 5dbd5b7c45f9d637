//! The invariants checked after every run, Jepsen-bank style: the database
//! and the answers the shoppers got must tell the same story.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::load::{is_documented, Kind, Ledger};
use crate::provision::SaleInfo;

/// A broken promise, with what was found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    /// A short stable name of the rule, e.g. `sold_plus_remaining_is_stock`.
    pub rule: &'static str,
    pub detail: String,
}

fn v(rule: &'static str, detail: String) -> Violation {
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

#[derive(sqlx::FromRow)]
struct SaleFacts {
    stock: i64,
    remaining: i64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    sell_count: i64,
    sold: i64,
    product_sold: i64,
    outside: i64,
    dup_users: i64,
}

/// Checks every sale of a run directly in SQL:
/// sold + remaining == stock; the product's sell_count equals the units of its
/// orders; at most one order per (sale, user); no order outside
/// [starts_at, ends_at) by database time; every 201 is an order row and every
/// order row is a 201 or a request whose outcome was unknown.
pub async fn check_database(
    db: &PgPool,
    sales: &[SaleInfo],
    ledger: &Ledger,
) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    for sale in sales {
        let f: SaleFacts = sqlx::query_as(
            "select s.stock, s.remaining, s.starts_at, s.ends_at, p.sell_count,
                    (select coalesce(sum(quantity), 0)::bigint from purchase_order o where o.sale_id = s.id) as sold,
                    (select coalesce(sum(quantity), 0)::bigint from purchase_order o where o.product_id = p.id) as product_sold,
                    (select count(*) from purchase_order o
                      where o.sale_id = s.id and (o.created_at < s.starts_at or o.created_at >= s.ends_at)) as outside,
                    (select count(*) from (select 1 from purchase_order o where o.sale_id = s.id
                                            group by o.user_id having count(*) > 1) d) as dup_users
               from sale s join product p on p.id = s.product_id where s.id = $1",
        )
        .bind(sale.id)
        .fetch_one(db)
        .await?;
        let id = sale.id;
        if f.sold + f.remaining != f.stock {
            out.push(v(
                "sold_plus_remaining_is_stock",
                format!(
                    "sale {id}: sold {} + remaining {} != stock {}",
                    f.sold, f.remaining, f.stock
                ),
            ));
        }
        if f.sell_count != f.product_sold {
            out.push(v(
                "sell_count_matches_orders",
                format!(
                    "sale {id}: product sell_count {} but its orders hold {} units",
                    f.sell_count, f.product_sold
                ),
            ));
        }
        if f.dup_users > 0 {
            out.push(v(
                "one_order_per_user",
                format!(
                    "sale {id}: {} user(s) hold more than one order",
                    f.dup_users
                ),
            ));
        }
        if f.outside > 0 {
            out.push(v(
                "orders_inside_window",
                format!(
                    "sale {id}: {} order(s) created outside [{}, {})",
                    f.outside, f.starts_at, f.ends_at
                ),
            ));
        }

        let rows: Vec<(i64, i64)> =
            sqlx::query_as("select id, user_id from purchase_order where sale_id = $1")
                .bind(id)
                .fetch_all(db)
                .await?;
        let in_db: HashMap<i64, i64> = rows.into_iter().collect();
        let answered: HashMap<i64, i64> = ledger
            .successes
            .iter()
            .filter(|s| s.sale_id == id)
            .map(|s| (s.order_id, s.user_id))
            .collect();
        let unknown: HashSet<i64> = ledger
            .unknown
            .iter()
            .filter(|u| u.0 == id)
            .map(|u| u.1)
            .collect();
        let phantom = answered
            .iter()
            .filter(|(o, u)| in_db.get(o) != Some(u))
            .count();
        if phantom > 0 {
            out.push(v(
                "every_201_is_an_order",
                format!("sale {id}: {phantom} answer(s) 201 without a matching order row"),
            ));
        }
        let unexplained = in_db
            .iter()
            .filter(|(o, u)| !answered.contains_key(o) && !unknown.contains(u))
            .count();
        if unexplained > 0 {
            out.push(v(
                "every_order_was_answered",
                format!("sale {id}: {unexplained} order row(s) that no shopper was told about"),
            ));
        }
    }
    Ok(out)
}

/// The checks possible without the database, from the admin's live stats:
/// sold + remaining == stock, one order per buyer, and the number of orders
/// between the 201s and the 201s plus the unknown outcomes.
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
                "one_order_per_user",
                format!("sale {id}: {orders} orders from {buyers} buyers"),
            ));
        }
        let created = ledger.successes.iter().filter(|x| x.sale_id == id).count() as i64;
        let unknown = ledger.unknown.iter().filter(|x| x.0 == id).count() as i64;
        if orders < created || orders > created + unknown {
            out.push(v(
                "orders_match_answers",
                format!("sale {id}: {orders} orders, but {created} answers were 201 and {unknown} unknown"),
            ));
        }
    }
    Ok(out)
}
