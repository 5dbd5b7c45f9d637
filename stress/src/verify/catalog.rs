//! The catalog's invariants, for the books a run stocked (each with the
//! units the harness put in, which it never changes during the run):
//!
//! - `stock + Σ units of the live catalog orders' lines of it = put in`;
//! - `stock >= 0` (no oversell);
//! - `sell_count = Σ live units of both kinds` (sale orders of the product
//!   and catalog lines of it).
//!
//! Sampled during the run in the sampler's snapshot ([`snapshot`],
//! [`check_sample`]), with the payment invariants of the books' catalog
//! orders (every paid order has exactly one succeeded payment, every
//! succeeded payment belongs to a paid or refunded order, no hold pending
//! past the grace), and checked after it ([`check`]) with the orders
//! themselves: each live exactly while it has no `released_at`, held for the
//! servers' `CART_HOLD_SECS` and not expired early, its `quantity` the sum
//! of its lines; every 201 is its order with the lines it announced, every
//! order was answered 201 or is one unknown outcome of its shopper; every
//! refusal of a checkout is `out_of_stock` (`busy`, `rate_limited` and
//! `request_in_progress` are answers to try again, retried with the same
//! Idempotency-Key, and counted apart in the report).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::during::HOLD_GRACE_MS;
use super::{v, Violation, LIVE};
use crate::environment::Stocked;
use crate::load::{Kind, Ledger};

/// One book in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ProductSample {
    pub product_id: i64,
    /// Units the harness put in.
    pub put_in: i64,
    pub stock: i64,
    pub sell_count: i64,
    /// Units of the live catalog orders' lines of it.
    pub catalog_live_units: i64,
    /// Units of its live sale orders.
    pub sale_live_units: i64,
    /// Its catalog orders that are paid without exactly one succeeded payment.
    pub paid_unpaired: i64,
    /// Succeeded payments of its catalog orders that are neither paid nor
    /// refunded.
    pub stray_payments: i64,
    /// Its catalog orders pending more than [`HOLD_GRACE_MS`] past `expires_at`.
    pub overdue_holds: i64,
}

/// Reads every book of `books` (run inside the sampler's snapshot).
pub async fn snapshot(
    conn: &mut PgConnection,
    books: &[Stocked],
) -> sqlx::Result<Vec<ProductSample>> {
    let ids: Vec<i64> = books.iter().map(|b| b.id).collect();
    let put_in: Vec<i64> = books.iter().map(|b| b.put_in).collect();
    let grace = HOLD_GRACE_MS as f64 / 1000.0;
    sqlx::query_as(&format!(
        "select p.id as product_id, x.put_in, p.stock, p.sell_count,
                coalesce(c.live, 0)::bigint as catalog_live_units,
                coalesce(s.live, 0)::bigint as sale_live_units,
                c.paid_unpaired, c.stray_payments, c.overdue_holds
           from unnest($1::bigint[], $2::bigint[]) x(id, put_in)
           join product p on p.id = x.id
           cross join lateral (
               select sum(l.quantity) filter (where o.status in {LIVE}) as live,
                      count(*) filter (where o.status = 'paid' and
                          (select count(*) from payment y
                            where y.order_id = o.id and y.status = 'succeeded') <> 1) as paid_unpaired,
                      count(*) filter (where o.status not in ('paid', 'refunded') and exists
                          (select 1 from payment y where y.order_id = o.id
                              and y.status in ('succeeded', 'refunding', 'refunded'))) as stray_payments,
                      count(*) filter (where o.status = 'pending_payment' and
                          o.expires_at < now() - make_interval(secs => {grace})) as overdue_holds
                 from order_line l join purchase_order o on o.id = l.order_id
                where l.product_id = p.id) c
           left join (select o.product_id, sum(o.quantity) as live from purchase_order o
                       where o.product_id = any($1) and o.status in {LIVE}
                       group by o.product_id) s on s.product_id = p.id
          order by p.id"
    ))
    .bind(&ids)
    .bind(&put_in)
    .fetch_all(conn)
    .await
}

/// The first broken invariant of one book's sample, described.
pub fn check_sample(x: &ProductSample) -> Option<String> {
    let id = x.product_id;
    if x.stock < 0 {
        Some(format!("product {id}: stock {} below zero", x.stock))
    } else if x.stock + x.catalog_live_units != x.put_in {
        Some(format!(
            "product {id}: stock {} + held {} != put in {}",
            x.stock, x.catalog_live_units, x.put_in
        ))
    } else if x.sell_count != x.catalog_live_units + x.sale_live_units {
        Some(format!(
            "product {id}: sell_count {} != live units {} (catalog {} + sales {})",
            x.sell_count,
            x.catalog_live_units + x.sale_live_units,
            x.catalog_live_units,
            x.sale_live_units
        ))
    } else if x.paid_unpaired > 0 {
        Some(format!(
            "product {id}: {} paid catalog order(s) without exactly one succeeded payment",
            x.paid_unpaired
        ))
    } else if x.stray_payments > 0 {
        Some(format!(
            "product {id}: {} succeeded payment(s) whose catalog order is neither paid nor refunded",
            x.stray_payments
        ))
    } else if x.overdue_holds > 0 {
        Some(format!(
            "product {id}: {} catalog hold(s) pending more than {HOLD_GRACE_MS} ms past expires_at",
            x.overdue_holds
        ))
    } else {
        None
    }
}

#[derive(sqlx::FromRow)]
struct OrderFacts {
    misreleased: i64,
    unlike_hold: i64,
    early: i64,
    miscounted: i64,
}

/// Checks the books after the run: their invariants, their catalog orders,
/// and the answers of the checkouts (`hold_secs`: the servers'
/// `CART_HOLD_SECS`).
pub async fn check(
    db: &PgPool,
    books: &[Stocked],
    hold_secs: i64,
    ledger: &Ledger,
) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    if books.is_empty() {
        return Ok(out);
    }
    let mut conn = db.acquire().await?;
    let samples = snapshot(&mut conn, books).await?;
    drop(conn);
    if samples.len() != books.len() {
        out.push(v(
            "books_stay_in_the_catalog",
            format!("{} book(s) stocked, {} found", books.len(), samples.len()),
        ));
    }
    for x in &samples {
        let rule = if x.stock < 0 {
            "no_oversell"
        } else if x.stock + x.catalog_live_units != x.put_in {
            "stock_plus_held_is_put_in"
        } else if x.sell_count != x.catalog_live_units + x.sale_live_units {
            "sell_count_matches_orders"
        } else {
            // The payment invariants of these orders are checked in `payments`.
            continue;
        };
        if let Some(what) = check_sample(x) {
            out.push(v(rule, what));
        }
    }
    let ids: Vec<i64> = books.iter().map(|b| b.id).collect();
    let f: OrderFacts = sqlx::query_as(&format!(
        "with o as (select * from purchase_order o where o.sale_id is null and o.id in
                        (select l.order_id from order_line l where l.product_id = any($1)))
         select (select count(*) from o where (o.status in {LIVE}) = (o.released_at is not null)
                                            or o.released_at < o.created_at) as misreleased,
                (select count(*) from o where o.expires_at is distinct from
                                              o.created_at + make_interval(secs => $2)) as unlike_hold,
                (select count(*) from o where o.status = 'expired'
                                          and o.released_at < o.expires_at) as early,
                (select count(*) from o where o.quantity <>
                    (select coalesce(sum(l.quantity), 0) from order_line l
                      where l.order_id = o.id)) as miscounted"
    ))
    .bind(&ids)
    .bind(hold_secs as f64)
    .fetch_one(db)
    .await?;
    let mut fail = |rule, n: i64, what: String| {
        if n > 0 {
            out.push(v(rule, format!("{n} catalog order(s) {what}")));
        }
    };
    fail(
        "released_at_marks_the_end",
        f.misreleased,
        "live with released_at, ended without it, or released before made".into(),
    );
    fail(
        "holds_as_configured",
        f.unlike_hold,
        format!("whose expires_at is not created_at + CART_HOLD_SECS of {hold_secs} s"),
    );
    fail(
        "no_hold_expires_early",
        f.early,
        "released as expired before expires_at".into(),
    );
    fail(
        "order_quantity_is_its_lines",
        f.miscounted,
        "whose quantity is not the sum of their lines".into(),
    );
    out.extend(check_answered(db, &ids, ledger).await?);
    out.extend(check_refusals(ledger));
    Ok(out)
}

/// Every 201 of a checkout is its order, of its shopper, with the lines it
/// announced; every catalog order of the books was answered 201 or is
/// explained by one checkout of the same shopper left without an answer.
async fn check_answered(
    db: &PgPool,
    books: &[i64],
    ledger: &Ledger,
) -> anyhow::Result<Vec<Violation>> {
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "select o.id, o.user_id, l.product_id, l.quantity::bigint
           from purchase_order o join order_line l on l.order_id = o.id
          where o.sale_id is null and o.id in
                (select order_id from order_line where product_id = any($1))
          order by o.id, l.product_id",
    )
    .bind(books)
    .fetch_all(db)
    .await?;
    let mut in_db: HashMap<i64, (i64, Vec<(i64, i64)>)> = HashMap::new();
    for (order, user, product, qty) in rows {
        in_db
            .entry(order)
            .or_insert_with(|| (user, Vec::new()))
            .1
            .push((product, qty));
    }
    let mut out = Vec::new();
    let mut answered = HashMap::new();
    let mut phantom = 0;
    for c in &ledger.checkouts {
        let mut lines = c.lines.clone();
        lines.sort_unstable();
        if in_db.get(&c.order_id) != Some(&(c.user_id, lines)) {
            phantom += 1;
        }
        answered.insert(c.order_id, ());
    }
    if phantom > 0 {
        out.push(v(
            "every_201_is_an_order",
            format!(
                "{phantom} checkout(s) answered 201 without an order of that shopper with those lines"
            ),
        ));
    }
    let mut unknown: HashMap<i64, usize> = HashMap::new();
    for u in &ledger.unknown_checkouts {
        *unknown.entry(*u).or_default() += 1;
    }
    let mut unanswered: HashMap<i64, usize> = HashMap::new();
    for (o, (u, _)) in &in_db {
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
                "{unexplained} catalog order(s) that no shopper was told about \
                 (no 201, no checkout left without an answer)"
            ),
        ));
    }
    Ok(out)
}

/// Whether a checkout answer is a refusal other than `out_of_stock`: not a
/// 201, not an answer to try again, and not a request left without answer.
fn wrong_refusal(status: u16, code: Option<&str>) -> bool {
    !matches!(
        (status, code),
        (0 | 201, _)
            | (409, Some("out_of_stock" | "request_in_progress"))
            | (429, Some("rate_limited"))
            | (503, Some("busy"))
    )
}

/// Every refusal of a checkout is `out_of_stock`.
pub fn check_refusals(ledger: &Ledger) -> Vec<Violation> {
    let mut wrong: BTreeMap<String, u64> = BTreeMap::new();
    for s in ledger.samples.iter().filter(|s| s.kind == Kind::Checkout) {
        if wrong_refusal(s.status, s.code.as_deref()) {
            *wrong
                .entry(format!("{} {}", s.status, s.code.as_deref().unwrap_or("-")))
                .or_default() += 1;
        }
    }
    wrong
        .into_iter()
        .map(|(what, n)| {
            v(
                "checkout_refusals_are_out_of_stock",
                format!("{n} checkout(s) answered {what}"),
            )
        })
        .collect()
}

/// What a run's catalog came to, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CartFacts {
    pub books: usize,
    /// Units the harness put in, over every book.
    pub units_put_in: i64,
    /// Units in live catalog orders at the end (paid, or still pending).
    pub units_sold: i64,
    /// Units in paid catalog orders at the end.
    pub units_paid: i64,
    /// Checkouts answered 201.
    pub checkouts_created: u64,
    /// Checkouts answered 201 per second of load.
    pub checkouts_per_sec: f64,
    /// Checkout requests answered (201 or not), and per second of load.
    pub checkouts_answered: u64,
    pub checkouts_answered_per_sec: f64,
    /// Checkouts left without a final answer.
    pub checkouts_unknown: u64,
    /// Every checkout answer that was not a 201, by `status code`.
    pub refusals: BTreeMap<String, u64>,
}

/// The facts of the books at the end of a run of `elapsed_secs`.
pub async fn facts(
    db: &PgPool,
    books: &[Stocked],
    ledger: &Ledger,
    elapsed_secs: f64,
) -> anyhow::Result<CartFacts> {
    let ids: Vec<i64> = books.iter().map(|b| b.id).collect();
    let (units_sold, units_paid): (i64, i64) = sqlx::query_as(&format!(
        "select coalesce(sum(l.quantity) filter (where o.status in {LIVE}), 0)::bigint,
                coalesce(sum(l.quantity) filter (where o.status = 'paid'), 0)::bigint
           from order_line l join purchase_order o on o.id = l.order_id
          where l.product_id = any($1)"
    ))
    .bind(&ids)
    .fetch_one(db)
    .await?;
    let mut refusals = BTreeMap::new();
    let mut answered = 0u64;
    for s in ledger.samples.iter().filter(|s| s.kind == Kind::Checkout) {
        answered += u64::from(s.status != 0);
        if s.status != 201 {
            let what = match (s.status, s.code.as_deref()) {
                (0, _) => "none (cut or timed out)".to_string(),
                (st, c) => format!("{st} {}", c.unwrap_or("-")),
            };
            *refusals.entry(what).or_default() += 1;
        }
    }
    Ok(CartFacts {
        books: books.len(),
        units_put_in: books.iter().map(|b| b.put_in).sum(),
        units_sold,
        units_paid,
        checkouts_created: ledger.checkouts.len() as u64,
        checkouts_per_sec: ledger.checkouts.len() as f64 / elapsed_secs.max(1e-6),
        checkouts_answered: answered,
        checkouts_answered_per_sec: answered as f64 / elapsed_secs.max(1e-6),
        checkouts_unknown: ledger.unknown_checkouts.len() as u64,
        refusals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_out_of_stock_is_a_right_refusal() {
        assert!(!wrong_refusal(201, None));
        assert!(!wrong_refusal(409, Some("out_of_stock")));
        assert!(!wrong_refusal(503, Some("busy")));
        assert!(!wrong_refusal(429, Some("rate_limited")));
        assert!(wrong_refusal(409, Some("cart_empty")));
        assert!(wrong_refusal(422, Some("validation_failed")));
    }
}
