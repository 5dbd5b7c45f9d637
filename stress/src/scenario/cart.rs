//! `cart`: many shoppers with random carts over a small catalog, a few
//! copies of each book, so the carts overlap on the last copies. Each
//! shopper puts one to three books in the cart (one or two copies each) and
//! checks out; a 201 is paid, declined or walked away from in the fixed
//! shares of [`fate`] (by the order of the 201s). A shopper refused
//! `out_of_stock` takes what is left: each short line is lowered to the
//! copies available, or dropped when there are none, and the cart is checked
//! out again at once; when nothing of the cart is left, the shopper comes
//! back every 250 ms while copies may still be released, for up to twice the
//! hold and five seconds more. The run ends once no catalog order of the
//! run's books is pending any more (the last webhooks delivered), so the
//! verification sees how it all ended.
//!
//! The hold is the servers' `CART_HOLD_SECS`: the harness starts its own
//! instances with `CART_HOLD_SECS` = `--hold-secs`, and the verification
//! checks every order's hold against it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{fate, max_end, Common, Fate, Run, Shares};
use crate::environment::Environment;
use crate::load::{run_jobs, CheckoutEnd, Ledger, Load};
use crate::provision::{self, Buyer};

/// How often a shopper whose whole cart is gone tries again.
const COME_BACK_EVERY: Duration = Duration::from_millis(250);

/// The catalog and its shoppers.
#[derive(Clone, Copy, Debug)]
pub struct CartSpec {
    /// Books in the catalog.
    pub products: usize,
    /// Copies of each book.
    pub copies: i64,
    pub buyers: usize,
    pub shares: Shares,
}

/// The `cart` command's options.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct CartArgs {
    /// Books in the catalog.
    #[arg(long, default_value_t = 20)]
    pub products: usize,
    /// Copies of each book.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..))]
    pub copies: i64,
    #[arg(long, default_value_t = 5000)]
    pub buyers: usize,
    /// Seconds a checked-out cart is held for payment: the servers'
    /// `CART_HOLD_SECS` (set on the instances the harness starts; with
    /// `--target`, start them with the same).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub hold_secs: i64,
    /// Percent of the checkouts that pay.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub pay: u32,
    /// Percent of the checkouts whose card is declined (the rest walk away).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub decline: u32,
}

impl CartArgs {
    /// The scenario these options ask for (the hold goes to `Common`).
    pub fn spec(&self) -> CartSpec {
        CartSpec {
            products: self.products,
            copies: self.copies,
            buyers: self.buyers,
            shares: Shares {
                pay: self.pay,
                decline: self.decline,
            },
        }
    }
}

/// A shopper's first cart: one to three different books of `catalog`, one
/// or two copies each, drawn from `seed`.
pub fn random_cart(catalog: &[i64], seed: u64) -> Vec<(i64, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.gen_range(1..=3usize).min(catalog.len());
    let mut lines: Vec<(i64, i64)> = catalog
        .choose_multiple(&mut rng, n)
        .map(|&p| (p, rng.gen_range(1..=2)))
        .collect();
    lines.sort_unstable();
    lines
}

/// Runs `cart` with `c.hold_secs` as the servers' `CART_HOLD_SECS`.
pub async fn cart(env: &Environment, c: &Common, spec: CartSpec) -> anyhow::Result<Run> {
    anyhow::ensure!(c.hold_secs > 0, "cart needs a hold: --hold-secs 1 or more");
    anyhow::ensure!(
        spec.shares.pay + spec.shares.decline <= 100,
        "--pay and --decline add up to more than 100"
    );
    anyhow::ensure!(spec.products > 0, "--products must be positive");
    let Some(db) = env.db.clone() else {
        anyhow::bail!("cart checks the catalog in SQL: it needs the database (--database-url)");
    };
    let people = provision::buyers(env, spec.buyers, "ca").await?;
    let admin = provision::admin_token(env, &c.admin).await?;
    let catalog = Arc::new(provision::catalog(env, &admin, spec.products, spec.copies).await?);
    let put_in = spec.copies * spec.products as i64;
    let seed: u64 = rand::random();
    let mut load = Load::for_env(env, c)?;
    load.reset_clock();
    let wins = Arc::new(AtomicU64::new(0));
    let paid = Arc::new(AtomicI64::new(0));
    let patience = Duration::from_secs(c.hold_secs as u64 * 2 + 5);
    let shares = spec.shares;
    let ledger = run_jobs(c.connections, people, "cart", {
        let catalog = catalog.clone();
        move |w, jobs: Arc<Vec<Buyer>>, i, mut ledger| {
            let (load, wins, paid) = (load.clone(), wins.clone(), paid.clone());
            let first = random_cart(&catalog, seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
            async move {
                let buyer = &jobs[i];
                shop(
                    &load,
                    w,
                    buyer,
                    first,
                    (put_in, &paid),
                    (&wins, shares),
                    patience,
                    &mut ledger,
                )
                .await;
                ledger
            }
        }
    })
    .await;
    settle(&db, &catalog, c.hold_secs).await?;
    Ok(Run {
        scenario: "cart",
        params: json!({"products": spec.products, "copies": spec.copies, "buyers": spec.buyers,
                       "hold_secs": c.hold_secs, "pay_pct": shares.pay,
                       "decline_pct": shares.decline, "abandon_pct": shares.abandon(),
                       "connections": c.connections}),
        environment: env.describe(),
        elapsed: max_end(&ledger),
        sales: vec![],
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}

/// One shopper: fill the cart, check out, and pay, decline or walk away;
/// after `out_of_stock`, take what is left or come back later. Everyone goes
/// home once every unit put in is paid.
#[allow(clippy::too_many_arguments)]
async fn shop(
    load: &Load,
    w: usize,
    buyer: &Buyer,
    mut cart: Vec<(i64, i64)>,
    (put_in, paid): (i64, &AtomicI64),
    (wins, shares): (&AtomicU64, Shares),
    patience: Duration,
    ledger: &mut Ledger,
) {
    for &(product, qty) in &cart {
        if !set_line(load, w, buyer, product, qty, ledger).await {
            return;
        }
    }
    let mut first_refusal: Option<Instant> = None;
    let mut attempt = 0;
    while paid.load(Ordering::Relaxed) < put_in {
        attempt += 1;
        let key = format!("cart-{}-{attempt}", buyer.id);
        match load.checkout_cart(w, buyer, &key, ledger).await {
            CheckoutEnd::Created(order) => {
                let units: i64 = cart.iter().map(|l| l.1).sum();
                let outcome = match fate(wins.fetch_add(1, Ordering::Relaxed), shares) {
                    Fate::Abandon => None,
                    Fate::Pay => Some(true),
                    Fate::Decline => Some(false),
                };
                if let Some(succeed) = outcome {
                    if let Some(payment) = load.pay(w, buyer, order, ledger).await {
                        if load.decide(w, &payment, succeed, ledger).await && succeed {
                            paid.fetch_add(units, Ordering::Relaxed);
                        }
                    }
                }
                return;
            }
            CheckoutEnd::OutOfStock(short) => {
                let since = *first_refusal.get_or_insert_with(Instant::now);
                if since.elapsed() > patience {
                    return;
                }
                let left = what_is_left(&cart, &short);
                if left.is_empty() {
                    // Nothing of it is left now: maybe later, when holds run out.
                    tokio::time::sleep(COME_BACK_EVERY).await;
                    continue;
                }
                for &(product, qty) in &cart {
                    let now = left.iter().find(|l| l.0 == product).map_or(0, |l| l.1);
                    if now != qty && !set_line(load, w, buyer, product, now, ledger).await {
                        return;
                    }
                }
                cart = left;
            }
            CheckoutEnd::Refused(_) | CheckoutEnd::Unknown => return,
        }
    }
}

/// The cart lowered to what `out_of_stock` said is available: each short
/// line to its copies available, dropped when there are none.
pub fn what_is_left(cart: &[(i64, i64)], short: &[crate::load::ShortLine]) -> Vec<(i64, i64)> {
    cart.iter()
        .map(|&(p, q)| match short.iter().find(|s| s.product_id == p) {
            Some(s) => (p, q.min(s.available)),
            None => (p, q),
        })
        .filter(|l| l.1 > 0)
        .collect()
}

/// Sets a cart line (0 removes it), trying again when there was no answer or
/// a "try again"; whether it was set.
async fn set_line(
    load: &Load,
    w: usize,
    buyer: &Buyer,
    product: i64,
    qty: i64,
    ledger: &mut Ledger,
) -> bool {
    for _ in 0..10 {
        match load.set_cart_line(w, buyer, product, qty, ledger).await {
            200 => return true,
            0 | 429 | 503 => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => return false,
        }
    }
    false
}

/// Waits until no catalog order of `catalog` is pending (each was paid,
/// failed or expired) and every webhook of the provider was delivered, for
/// at most the hold and thirty seconds more.
async fn settle(db: &sqlx::PgPool, catalog: &[i64], hold_secs: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(hold_secs as u64 + 30);
    loop {
        let open: Option<i64> = sqlx::query_scalar(
            "select (select count(*) from purchase_order o
                      where o.status = 'pending_payment' and o.sale_id is null
                        and exists (select 1 from order_line l
                                     where l.order_id = o.id and l.product_id = any($1)))
                  + (select count(*) from outbox
                      where kind = 'payment_webhook' and status = 'pending')",
        )
        .bind(catalog)
        .fetch_one(db)
        .await
        .ok();
        if open == Some(0) || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ShortLine;

    #[test]
    fn random_carts_hold_one_to_three_books_of_the_catalog() {
        let catalog: Vec<i64> = (100..120).collect();
        for seed in 0..500 {
            let c = random_cart(&catalog, seed);
            assert!((1..=3).contains(&c.len()), "{c:?}");
            assert!(c.windows(2).all(|w| w[0].0 < w[1].0), "distinct: {c:?}");
            assert!(c
                .iter()
                .all(|(p, q)| catalog.contains(p) && (1..=2).contains(q)));
        }
        assert_eq!(random_cart(&catalog, 7), random_cart(&catalog, 7));
        assert_eq!(random_cart(&[5], 3).len(), 1);
    }

    #[test]
    fn a_shopper_refused_takes_what_is_left() {
        let short = |product_id, requested, available| ShortLine {
            product_id,
            requested,
            available,
        };
        let cart = [(1, 2), (2, 1), (3, 2)];
        assert_eq!(
            what_is_left(&cart, &[short(1, 2, 1), short(3, 2, 0)]),
            vec![(1, 1), (2, 1)]
        );
        assert!(what_is_left(&[(3, 2)], &[short(3, 2, 0)]).is_empty());
    }
}
