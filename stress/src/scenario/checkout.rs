//! `checkout`: many more shoppers than units on a sale whose winners have a
//! few seconds to pay. Every winner pays, is declined or walks away, in fixed
//! shares of the wins (60/20/20 by default: the k-th win's fate is its slot
//! `37k mod 100` against the shares, a permutation of every hundred wins, so
//! the shares are exact per hundred and the fates mixed from the first win). A shopper refused
//! `sold_out` comes back every 250 ms while units may still be released, for
//! up to twice the hold and five seconds more, so released units are sold
//! again until every unit is paid or the shoppers run out. The run ends once
//! no hold is pending any more (the last webhooks delivered), so the
//! verification sees how it all ended.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{max_end, until_open, Common, Run};
use crate::environment::Environment;
use crate::load::{run_jobs, Attempt, Load};
use crate::provision::{self, Buyer, SaleSpec};

/// How often a shopper refused `sold_out` tries again.
const COME_BACK_EVERY: Duration = Duration::from_millis(250);

/// What share of the winners (in percent) pays and is declined; the rest
/// walk away and let their hold run out.
#[derive(Clone, Copy, Debug)]
pub struct Shares {
    pub pay: u32,
    pub decline: u32,
}

impl Shares {
    pub fn abandon(self) -> u32 {
        100 - self.pay - self.decline
    }
}

/// What a winner does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pay,
    Decline,
    Abandon,
}

/// The fate of the `k`-th win (from 0): exact shares in every hundred wins,
/// mixed (37 and 100 are coprime, so the slots of a hundred wins are all
/// different).
pub fn fate(k: u64, shares: Shares) -> Fate {
    let slot = (k.wrapping_mul(37) % 100) as u32;
    if slot < shares.pay {
        Fate::Pay
    } else if slot < shares.pay + shares.decline {
        Fate::Decline
    } else {
        Fate::Abandon
    }
}

/// Runs `checkout` with `c.hold_secs` as the hold.
pub async fn checkout(
    env: &Environment,
    c: &Common,
    stock: i64,
    buyers: usize,
    shares: Shares,
) -> anyhow::Result<Run> {
    anyhow::ensure!(
        c.hold_secs > 0,
        "checkout needs a hold: --hold-secs 1 or more"
    );
    anyhow::ensure!(
        shares.pay + shares.decline <= 100,
        "--pay and --decline add up to more than 100"
    );
    let people = provision::buyers(env, buyers, "co").await?;
    let admin = provision::admin_token(env, &c.admin).await?;
    let sale = provision::sale(env, &admin, SaleSpec::new(stock, 1500, c.hold_secs)).await?;
    let mut load = Load::for_env(env, c)?;
    until_open(env, &sale).await?;
    load.reset_clock();
    let sale_id = sale.id;
    let wins = Arc::new(AtomicU64::new(0));
    let paid = Arc::new(AtomicI64::new(0));
    let patience = Duration::from_secs(c.hold_secs as u64 * 2 + 5);
    let ledger = run_jobs(
        c.connections,
        people,
        "checkout",
        move |w, jobs: Arc<Vec<Buyer>>, i, mut ledger| {
            let (load, wins, paid) = (load.clone(), wins.clone(), paid.clone());
            async move {
                let buyer = &jobs[i];
                let mut first_refusal: Option<Instant> = None;
                // Every unit paid: the shoppers still in line go home.
                while paid.load(Ordering::Relaxed) < stock {
                    let before = ledger.successes.len();
                    match load
                        .purchase_until_final(w, buyer, sale_id, 100, &mut ledger)
                        .await
                    {
                        Attempt::Created => {
                            let order = ledger.successes[before..]
                                .last()
                                .map(|s| s.order_id)
                                .expect("a created purchase is recorded");
                            let k = wins.fetch_add(1, Ordering::Relaxed);
                            let outcome = match fate(k, shares) {
                                Fate::Abandon => None,
                                Fate::Pay => Some(true),
                                Fate::Decline => Some(false),
                            };
                            if let Some(succeed) = outcome {
                                if let Some(payment) = load.pay(w, buyer, order, &mut ledger).await
                                {
                                    if load.decide(w, &payment, succeed, &mut ledger).await
                                        && succeed
                                    {
                                        paid.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            break;
                        }
                        Attempt::Refused(code) if code == "sold_out" => {
                            let since = *first_refusal.get_or_insert_with(Instant::now);
                            if since.elapsed() > patience {
                                break;
                            }
                            tokio::time::sleep(COME_BACK_EVERY).await;
                        }
                        _ => break,
                    }
                }
                ledger
            }
        },
    )
    .await;
    settle(env, &admin, sale_id, c.hold_secs).await?;
    Ok(Run {
        scenario: "checkout",
        params: json!({"stock": stock, "buyers": buyers, "hold_secs": c.hold_secs,
                       "pay_pct": shares.pay, "decline_pct": shares.decline,
                       "abandon_pct": shares.abandon(), "connections": c.connections}),
        environment: env.describe(),
        elapsed: max_end(&ledger),
        sales: vec![sale],
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}

/// Waits until the sale holds no pending order (each was paid, failed or
/// expired) and, with the database reachable, every webhook of the provider
/// was delivered (a late one may still take a unit again or be refunded),
/// for at most the hold and thirty seconds more: the last decisions may still
/// be on their way when the shoppers stop.
async fn settle(
    env: &Environment,
    admin: &str,
    sale_id: i64,
    hold_secs: i64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/admin/sales/{sale_id}/stats", env.targets[0]);
    let deadline = Instant::now() + Duration::from_secs(hold_secs as u64 + 30);
    loop {
        let pending = match client.get(&url).bearer_auth(admin).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["pending"].as_i64()),
            Err(_) => None,
        };
        let undelivered = match &env.db {
            Some(db) => sqlx::query_scalar::<_, i64>(
                "select count(*) from outbox where kind = 'payment_webhook' and status = 'pending'",
            )
            .fetch_one(db)
            .await
            .ok(),
            None => Some(0),
        };
        if (pending == Some(0) && undelivered == Some(0)) || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_follow_the_shares_exactly_in_every_hundred_wins() {
        let shares = Shares {
            pay: 60,
            decline: 20,
        };
        let count = |f| (0..1000).filter(|&k| fate(k, shares) == f).count();
        assert_eq!(
            (count(Fate::Pay), count(Fate::Decline), count(Fate::Abandon)),
            (600, 200, 200)
        );
        // Mixed from the start: the first ten wins hold all three fates.
        let first: Vec<Fate> = (0..10).map(|k| fate(k, shares)).collect();
        assert!(
            first.contains(&Fate::Decline) && first.contains(&Fate::Abandon),
            "{first:?}"
        );
        assert_eq!(fate(0, Shares { pay: 0, decline: 0 }), Fate::Abandon);
        assert_eq!(
            fate(
                99,
                Shares {
                    pay: 100,
                    decline: 0
                }
            ),
            Fate::Pay
        );
    }
}
