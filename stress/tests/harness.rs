//! The harness checks itself: the verifier must fail a deliberately
//! inconsistent database, small `exact` and `dupes` runs must pass end to
//! end against real server processes, and a short `ceiling` must measure every
//! strategy with pgbench.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashsale::embedded_pg::{EmbeddedOptions, EmbeddedPg};
use sqlx::PgPool;
use stress::environment::{default_server_env, Environment};
use stress::load::{Kind, Ledger, Sample, Success};
use stress::provision::{AdminLogin, SaleInfo};
use stress::scenario::{Common, Scenario};
use stress::verify::{check_answers, check_database};

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
            "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents)
             values ($1, $2, $3, 1, 100, 100) returning id",
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
        });
    }
    let info = SaleInfo {
        id: sale,
        product_id: product,
        stock: 10,
        starts_at,
        ends_at,
    };
    (info, ledger, users)
}

fn rules(v: &[stress::verify::Violation]) -> Vec<&'static str> {
    let mut r: Vec<_> = v.iter().map(|v| v.rule).collect();
    r.sort();
    r.dedup();
    r
}

#[tokio::test]
async fn a_consistent_database_passes() {
    let db = fresh_db().await;
    let (sale, ledger, _) = consistent_sale(&db).await;
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn an_extra_order_fails_the_run() {
    let db = fresh_db().await;
    let (sale, ledger, users) = consistent_sale(&db).await;
    sqlx::query(
        "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents)
         values ($1, $2, $3, 1, 100, 100)",
    )
    .bind(sale.id)
    .bind(sale.product_id)
    .bind(users[2])
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    let r = rules(&v);
    assert!(r.contains(&"sold_plus_remaining_is_stock"), "{v:?}");
    assert!(r.contains(&"every_order_was_answered"), "{v:?}");
    assert!(r.contains(&"sell_count_matches_orders"), "{v:?}");
    assert!(
        v.iter()
            .any(|x| x.detail.contains("sold 3 + remaining 8 != stock 10")),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_sell_count_off_by_one_fails_the_run() {
    let db = fresh_db().await;
    let (sale, ledger, _) = consistent_sale(&db).await;
    sqlx::query("update product set sell_count = sell_count + 1 where id = $1")
        .bind(sale.product_id)
        .execute(&db)
        .await
        .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["sell_count_matches_orders"], "{v:?}");
    assert!(
        v[0].detail
            .contains("sell_count 3 but its orders hold 2 units"),
        "{v:?}"
    );
}

#[tokio::test]
async fn an_order_outside_the_window_fails_the_run() {
    let db = fresh_db().await;
    let (sale, ledger, _) = consistent_sale(&db).await;
    sqlx::query(
        "update purchase_order set created_at = (select ends_at from sale where id = $1) + interval '1 second'
          where id = $2",
    )
    .bind(sale.id)
    .bind(ledger.successes[0].order_id)
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["orders_inside_window"], "{v:?}");
}

#[tokio::test]
async fn a_201_without_an_order_fails_the_run() {
    let db = fresh_db().await;
    let (sale, mut ledger, users) = consistent_sale(&db).await;
    ledger.successes.push(Success {
        sale_id: sale.id,
        user_id: users[2],
        order_id: 999_999,
        done_us: 2,
    });
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["every_201_is_an_order"], "{v:?}");
}

#[tokio::test]
async fn an_order_whose_answer_was_lost_is_explained_by_the_unknown_outcome() {
    let db = fresh_db().await;
    let (sale, mut ledger, _) = consistent_sale(&db).await;
    let lost = ledger.successes.pop().unwrap();
    ledger.unknown.push((lost.sale_id, lost.user_id));
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn server_errors_and_undocumented_answers_fail_the_run() {
    let sample = |status, code: Option<&str>| Sample {
        kind: Kind::Purchase,
        status,
        code: code.map(str::to_string),
        sent_us: 0,
        latency_us: 1,
    };
    let ledger = Ledger {
        samples: vec![
            sample(201, None),
            sample(409, Some("sold_out")),
            sample(503, Some("busy")),
            sample(500, Some("internal_error")),
            sample(200, None),
            sample(409, Some("made_up")),
        ],
        ..Ledger::default()
    };
    let v = check_answers(&ledger);
    let r = rules(&v);
    assert_eq!(
        r,
        vec!["answers_are_documented", "no_server_errors"],
        "{v:?}"
    );
    assert_eq!(v.len(), 3, "{v:?}");
}

fn stress_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stress"))
}

fn common() -> Common {
    Common {
        connections: 32,
        timeout: Duration::from_secs(30),
        admin: AdminLogin::default(),
    }
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
    let sold_out: u64 = s
        .answers
        .iter()
        .filter(|a| a.code.as_deref() == Some("sold_out"))
        .map(|a| a.count)
        .sum();
    assert_eq!(sold_out, 380, "{:?}", s.answers);
    assert!(s.time_to_sell_out_secs.is_some());
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
    let dupes: u64 = s
        .answers
        .iter()
        .filter(|a| a.code.as_deref() == Some("already_purchased"))
        .map(|a| a.count)
        .sum();
    assert_eq!(dupes, 120, "{:?}", s.answers);
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
