//! The harness checks itself: the verifier must fail a deliberately
//! inconsistent database, during the run as well as after it (in
//! `harness/verifier.rs`), small `exact`
//! (with and without a hold) and `dupes` runs must pass end to end against
//! real server processes, and a short `ceiling` must measure every strategy
//! with pgbench. The faults (`--chaos`), the routing around a dead instance
//! and the deadlock check are tested in `harness/chaos.rs`, the `checkout`
//! scenario and the payment checks in `harness/checkout.rs`, the `cart`
//! scenario and the catalog checks in `harness/cart.rs`, the `queue`
//! scenario and the waiting room's checks in `harness/queue.rs`, a run behind
//! PgBouncer (`--pooler`) in `harness/pooler.rs`, one with a read replica
//! (`--replica`) in `harness/replica.rs`, a failover to the standby in
//! `harness/failover.rs`.

#[path = "harness/cart.rs"]
mod cart;
#[path = "harness/chaos.rs"]
mod chaos;
#[path = "harness/checkout.rs"]
mod checkout;
#[path = "harness/failover.rs"]
mod failover;
#[path = "harness/pooler.rs"]
mod pooler;
#[path = "harness/queue.rs"]
mod queue;
#[path = "harness/replica.rs"]
mod replica;
#[path = "harness/verifier.rs"]
mod verifier;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashsale::embedded_pg::{EmbeddedOptions, EmbeddedPg};
use sqlx::PgPool;
use stress::environment::{default_server_env, Environment};
use stress::load::{Ledger, Success};
use stress::provision::{AdminLogin, SaleInfo};
use stress::scenario::{Common, Scenario};
use stress::verify::during::{self, SaleSample, Snapshot};

fn cluster() -> &'static EmbeddedPg {
    static PG: OnceLock<EmbeddedPg> = OnceLock::new();
    PG.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("flashsale-harness-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        EmbeddedPg::start(&EmbeddedOptions {
            data_dir: dir,
            bin_dir: None,
            ephemeral: true,
            max_connections: 100,
        })
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"))
    })
}

async fn fresh_db() -> PgPool {
    let pg = tokio::task::spawn_blocking(cluster).await.expect("cluster");
    let name = format!("v{}", rand_suffix());
    flashsale::run::create_database(pg, &name)
        .await
        .expect("create db");
    let pool = PgPool::connect_with(pg.connect_options(&name))
        .await
        .expect("connect");
    flashsale::db::migrate(&pool).await.expect("migrate");
    pool
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{n:x}")
}

/// A sale of 10 with two buyers who each bought one, all consistent, and the
/// ledger of the two 201s that announced them.
async fn consistent_sale(db: &PgPool) -> (SaleInfo, Ledger, Vec<i64>) {
    let users: Vec<i64> = sqlx::query_scalar(
        "insert into app_user (username, email, password_hash)
         select 'u' || g, 'u' || g || '@x.test', '!' from generate_series(1, 3) g returning id",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let product: i64 = sqlx::query_scalar(
        "insert into product (seller_id, name, price_cents, sell_count) values ($1, 'b', 100, 2) returning id",
    )
    .bind(users[0])
    .fetch_one(db)
    .await
    .unwrap();
    let (sale, starts_at, ends_at): (i64, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "insert into sale (product_id, starts_at, ends_at, stock, remaining, price_cents, created_by)
         values ($1, now() - interval '1 hour', now() + interval '1 hour', 10, 8, 100, $2)
         returning id, starts_at, ends_at",
    )
    .bind(product)
    .bind(users[0])
    .fetch_one(db)
    .await
    .unwrap();
    let mut ledger = Ledger::default();
    for &u in &users[..2] {
        let order: i64 = sqlx::query_scalar(
            "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents,
                                         currency)
             values ($1, $2, $3, 1, 100, 100, 'EUR') returning id",
        )
        .bind(sale)
        .bind(product)
        .bind(u)
        .fetch_one(db)
        .await
        .unwrap();
        ledger.successes.push(Success {
            sale_id: sale,
            user_id: u,
            order_id: order,
            done_us: 1,
            instance: 0,
        });
    }
    let info = SaleInfo {
        id: sale,
        product_id: product,
        stock: 10,
        starts_at,
        ends_at,
        hold_secs: 0,
    };
    (info, ledger, users)
}

fn rules(v: &[stress::verify::Violation]) -> Vec<&'static str> {
    let mut r: Vec<_> = v.iter().map(|v| v.rule).collect();
    r.sort();
    r.dedup();
    r
}

fn snapshot_of(remaining: i64, live_units: i64, sell_count: i64) -> Snapshot {
    Snapshot {
        at: Utc::now(),
        since_start: Duration::from_millis(1250),
        sales: vec![SaleSample {
            sale_id: 7,
            product_id: 3,
            stock: 10,
            remaining,
            live_units,
            sell_count,
            product_live_units: live_units,
            paid_unpaired: 0,
            stray_payments: 0,
            overdue_holds: 0,
            queue_mismatch: 0,
            unadmitted_orders: 0,
            dangling_tickets: 0,
        }],
        products: vec![],
    }
}

fn stress_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stress"))
}

fn common() -> Common {
    Common {
        connections: 32,
        timeout: Duration::from_secs(30),
        admin: AdminLogin::default(),
        hold_secs: 0,
        chaos: None,
    }
}

fn answered(s: &stress::report::Summary, code: &str) -> u64 {
    s.answers
        .iter()
        .filter(|a| a.code.as_deref() == Some(code))
        .map(|a| a.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_exact_run_sells_exactly_the_stock_on_two_instances() {
    let env = Environment::self_contained(2, &default_server_env(), &stress_exe())
        .await
        .unwrap();
    let summary = stress::run_and_verify(
        &env,
        &common(),
        &Scenario::Exact {
            stock: 20,
            buyers: 400,
        },
    )
    .await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.purchases_created, 20);
    assert_eq!(answered(&s, "sold_out"), 380, "{:?}", s.answers);
    assert!(s.time_to_sell_out_secs.is_some());
}

/// On one server, three runs with one-second holds. A small `exact` passes,
/// sampled while it runs. A short `mixed` soak draws buyers from a small pool
/// again and again: holds expire, their units are won again (by the same
/// shoppers too), so there are more 201s than units sold, and it passes.
/// Then an `exact` run whose product's sell_count is wrong for a moment, and
/// right again by the end, fails on the sampled invariants alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_one_second_holds_pass_and_a_passing_corruption_fails() {
    let env = Environment::self_contained(1, &default_server_env(), &stress_exe())
        .await
        .unwrap();
    let held = Common {
        hold_secs: 1,
        ..common()
    };
    let exact = Scenario::Exact {
        stock: 10,
        buyers: 200,
    };
    let mixed = Scenario::Mixed {
        duration: Duration::from_secs(4),
        sales: 2,
        stock: 5,
        users: 40,
    };
    let first = stress::run_and_verify(&env, &held, &exact).await;
    let soak = stress::run_and_verify(&env, &held, &mixed).await;

    let db = env.db.clone().unwrap();
    let sales = env.sales_made();
    let before = sales.lock().unwrap().len();
    let corrupt = tokio::spawn(async move {
        let sale = loop {
            if let Some(&id) = sales.lock().unwrap().get(before) {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let bump = |by: i64| {
            sqlx::query(
                "update product set sell_count = sell_count + $2
                  where id = (select product_id from sale where id = $1)",
            )
            .bind(sale)
            .bind(by)
        };
        bump(1000).execute(&db).await.unwrap();
        tokio::time::sleep(during::EVERY * 3).await;
        bump(-1000).execute(&db).await.unwrap();
    });
    let second = stress::run_and_verify(&env, &held, &exact).await;
    corrupt.await.unwrap();
    env.shutdown().await;

    let s = first.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let sampling = s.sampling.as_ref().unwrap();
    assert!(sampling.samples > 0 && sampling.failed == 0, "{sampling:?}");
    assert_eq!(s.purchases_created, 10);

    let s = soak.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(
        s.sampling.as_ref().unwrap().samples >= 10,
        "{:?}",
        s.sampling
    );
    let tally = s.tally.unwrap();
    assert!(tally.units_sold <= 10, "{tally:?}");
    assert!(tally.orders_released > 0, "no hold expired: {tally:?}");
    assert_eq!(
        s.purchases_created as i64,
        tally.units_sold + tally.orders_released,
        "{tally:?}"
    );

    let s = second.unwrap();
    let r = rules(&s.violations);
    assert_eq!(
        r,
        vec!["invariants_hold_during_the_run"],
        "{:?}",
        s.violations
    );
    assert!(
        s.violations[0].detail.contains("sell_count"),
        "{:?}",
        s.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_dupes_run_gives_each_buyer_one_order() {
    let env = Environment::self_contained(1, &default_server_env(), &stress_exe())
        .await
        .unwrap();
    let summary = stress::run_and_verify(
        &env,
        &common(),
        &Scenario::Dupes {
            users: 30,
            per_user: 5,
        },
    )
    .await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.purchases_created, 30);
    assert_eq!(answered(&s, "already_purchased"), 120, "{:?}", s.answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_ceiling_measures_every_strategy_and_keeps_the_hot_row_consistent() {
    let c = stress::ceiling::measure(&stress::ceiling::Options {
        seconds: 1,
        clients: 2,
    })
    .await
    .unwrap();
    let names: Vec<_> = c.readings.iter().map(|r| r.strategy).collect();
    assert_eq!(names, ["per_purchase_txn", "single_statement", "batch64"]);
    for r in &c.readings {
        assert!(r.transactions > 0 && r.purchases_per_sec > 0.0, "{r:?}");
    }
    assert!(c.orders > 0, "{c:?}");
    assert_eq!(c.remaining + c.orders, c.stock, "{c:?}");
    assert_eq!(c.sell_count, c.orders, "{c:?}");
    assert!(c.consistent, "{c:?}");
}
