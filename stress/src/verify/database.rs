//! The invariants checked in SQL after a run, against the ledger of answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{v, Violation, LIVE};
use crate::load::Ledger;
use crate::provision::SaleInfo;

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
    overlapping: i64,
    misreleased: i64,
    unlike_sale: i64,
    early: i64,
}

/// Checks every sale of a run directly in SQL, with live-order semantics:
/// remaining + units of live orders == stock; the product's sell_count equals
/// the units of its live orders (of its sales, and the lines of catalog
/// orders, which have no sale); at most one live order per (sale, user), and
/// a shopper's next order only after the previous one was released; every
/// order is live exactly while it has no `released_at`; every order carries
/// its sale's hold (`expires_at = created_at + hold_secs`, or none) and no
/// hold expired early; no order outside [starts_at, ends_at) by database
/// time; every 201 is an order row (of any status: a hold answered 201 may
/// have expired since) and every order row is a 201, a request whose
/// outcome was unknown, or an order told late (`busy`, then
/// `already_purchased` on the retry), each explaining at most one row.
pub async fn check_database(
    db: &PgPool,
    sales: &[SaleInfo],
    ledger: &Ledger,
) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    for sale in sales {
        let f: SaleFacts = sqlx::query_as(&format!(
            "select s.stock, s.remaining, s.starts_at, s.ends_at, p.sell_count,
                    (select coalesce(sum(quantity), 0)::bigint from purchase_order o
                      where o.sale_id = s.id and o.status in {LIVE}) as sold,
                    ((select coalesce(sum(quantity), 0) from purchase_order o
                       where o.product_id = p.id and o.status in {LIVE})
                     + (select coalesce(sum(l.quantity), 0) from order_line l
                          join purchase_order o on o.id = l.order_id
                         where l.product_id = p.id and o.status in {LIVE}))::bigint as product_sold,
                    (select count(*) from purchase_order o
                      where o.sale_id = s.id and (o.created_at < s.starts_at or o.created_at >= s.ends_at)) as outside,
                    (select count(*) from (select 1 from purchase_order o where o.sale_id = s.id and o.status in {LIVE}
                                            group by o.user_id having count(*) > 1) d) as dup_users,
                    (select count(*) from (select o.created_at,
                                                  lag(coalesce(o.released_at, 'infinity')) over
                                                      (partition by o.user_id order by o.created_at, o.id) as prev_end
                                             from purchase_order o where o.sale_id = s.id) x
                      where x.created_at < x.prev_end) as overlapping,
                    (select count(*) from purchase_order o
                      where o.sale_id = s.id and ((o.status in {LIVE}) = (o.released_at is not null)
                                                  or o.released_at < o.created_at)) as misreleased,
                    (select count(*) from purchase_order o
                      where o.sale_id = s.id and o.expires_at is distinct from
                            case when s.hold_secs > 0 then o.created_at + make_interval(secs => s.hold_secs) end) as unlike_sale,
                    (select count(*) from purchase_order o
                      where o.sale_id = s.id and o.status = 'expired' and o.released_at < o.expires_at) as early
               from sale s join product p on p.id = s.product_id where s.id = $1"
        ))
        .bind(sale.id)
        .fetch_one(db)
        .await?;
        let id = sale.id;
        let mut fail = |rule, broken: bool, detail: String| {
            if broken {
                out.push(v(rule, format!("sale {id}: {detail}")));
            }
        };
        fail(
            "sold_plus_remaining_is_stock",
            f.sold + f.remaining != f.stock,
            format!(
                "sold {} + remaining {} != stock {} (sold: units of live orders)",
                f.sold, f.remaining, f.stock
            ),
        );
        fail(
            "sell_count_matches_orders",
            f.sell_count != f.product_sold,
            format!(
                "product sell_count {} but its live orders hold {} units",
                f.sell_count, f.product_sold
            ),
        );
        fail(
            "one_live_order_per_user",
            f.dup_users > 0,
            format!("{} user(s) hold more than one live order", f.dup_users),
        );
        fail(
            "rebuys_follow_releases",
            f.overlapping > 0,
            format!(
                "{} order(s) made while the same user's previous order was still live",
                f.overlapping
            ),
        );
        fail(
            "released_at_marks_the_end",
            f.misreleased > 0,
            format!(
                "{} order(s) live with released_at, ended without it, or released before made",
                f.misreleased
            ),
        );
        fail(
            "holds_as_configured",
            f.unlike_sale > 0,
            format!(
                "{} order(s) whose expires_at is not created_at + the sale's hold of {} s",
                f.unlike_sale, sale.hold_secs
            ),
        );
        fail(
            "no_hold_expires_early",
            f.early > 0,
            format!("{} hold(s) released as expired before expires_at", f.early),
        );
        fail(
            "orders_inside_window",
            f.outside > 0,
            format!(
                "{} order(s) created outside [{}, {})",
                f.outside, f.starts_at, f.ends_at
            ),
        );
        out.extend(check_answered(db, id, ledger).await?);
    }
    Ok(out)
}

/// Every 201 of a sale is one of its order rows, and every row was answered
/// 201 or is explained by one unknown outcome of the same buyer, or by one
/// `busy` that the buyer's retry learned was an order (`told_late`).
async fn check_answered(db: &PgPool, id: i64, ledger: &Ledger) -> anyhow::Result<Vec<Violation>> {
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
    let mut unknown: HashMap<i64, usize> = HashMap::new();
    for u in ledger
        .unknown
        .iter()
        .chain(&ledger.told_late)
        .filter(|u| u.0 == id)
    {
        *unknown.entry(u.1).or_default() += 1;
    }
    let mut out = Vec::new();
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
    let mut unanswered: HashMap<i64, usize> = HashMap::new();
    for (o, u) in &in_db {
        if !answered.contains_key(o) {
            *unanswered.entry(*u).or_default() += 1;
        }
    }
    let unexplained: usize = unanswered
        .iter()
        .map(|(u, n)| n.saturating_sub(unknown.get(u).copied().unwrap_or(0)))
        .sum();
    if unexplained > 0 {
        out.push(v(
            "every_order_was_answered",
            format!(
                "sale {id}: {unexplained} order row(s) that no shopper was told about \
                 (no 201, no unknown outcome, no busy then already_purchased)"
            ),
        ));
    }
    Ok(out)
}

/// The 201s of the run's sales that no order row matches: acknowledged
/// orders the database lost (after a failover to an asynchronous standby,
/// the commits it had not received). The same rows break
/// `every_201_is_an_order`.
pub async fn lost_acknowledged(
    db: &PgPool,
    sales: &[SaleInfo],
    ledger: &Ledger,
) -> anyhow::Result<u64> {
    let ids: Vec<i64> = sales.iter().map(|s| s.id).collect();
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("select id, user_id from purchase_order where sale_id = any($1)")
            .bind(&ids)
            .fetch_all(db)
            .await?;
    let in_db: HashMap<i64, i64> = rows.into_iter().collect();
    Ok(ledger
        .successes
        .iter()
        .filter(|s| ids.contains(&s.sale_id) && in_db.get(&s.order_id) != Some(&s.user_id))
        .count() as u64)
}

/// What the run's sales hold at the end, by the database.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Tally {
    /// Units in live orders: what is sold (or held) now.
    pub units_sold: i64,
    /// Orders that stopped being live (expired holds, cancellations).
    pub orders_released: i64,
}

/// Units in live orders and orders released, over the run's sales.
pub async fn tally(db: &PgPool, sales: &[SaleInfo]) -> anyhow::Result<Tally> {
    let ids: Vec<i64> = sales.iter().map(|s| s.id).collect();
    let (units_sold, orders_released): (i64, i64) = sqlx::query_as(&format!(
        "select coalesce(sum(quantity) filter (where status in {LIVE}), 0)::bigint,
                count(*) filter (where status not in {LIVE})
           from purchase_order where sale_id = any($1)"
    ))
    .bind(&ids)
    .fetch_one(db)
    .await?;
    Ok(Tally {
        units_sold,
        orders_released,
    })
}
