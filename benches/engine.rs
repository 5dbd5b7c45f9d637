//! Micro-benchmarks of the engine's building blocks, and the purchase
//! transaction against a real PostgreSQL (one buyer per transaction), the
//! baseline that other purchase strategies are measured against.
//!
//! ```text
//! cargo bench --bench engine
//! BCRYPT_COST=12 cargo bench --bench engine -- password
//! ```

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flashsale::auth::{JwtKeys, Role};
use flashsale::config::{PurchaseMode, PurchaseSettings};
use flashsale::domain::Quantity;
use flashsale::embedded_pg::{scratch_dir, EmbeddedOptions, EmbeddedPg};
use flashsale::live::Board;
use flashsale::purchase::{PurchaseEngine, PurchaseRequest};
use flashsale::routes::sales::PurchaseBody;

fn jwt(c: &mut Criterion) {
    let keys = JwtKeys::new(
        b"bench-secret-bench-secret-bench-secret!!",
        Duration::from_secs(900),
    );
    let (token, _) = keys.issue(42, Role::Customer).expect("sign");
    c.bench_function("jwt/verify", |b| {
        b.iter(|| keys.verify(std::hint::black_box(&token)).expect("valid"))
    });
    c.bench_function("jwt/issue", |b| {
        b.iter(|| keys.issue(42, Role::Customer).expect("sign"))
    });
}

fn password(c: &mut Criterion) {
    let cost: u32 = std::env::var("BCRYPT_COST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut g = c.benchmark_group("password");
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("bcrypt_hash", cost), &cost, |b, &cost| {
        b.iter(|| bcrypt::hash("correct horse battery", cost).expect("hash"))
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let body = br#"{"quantity": 1}"#;
    c.bench_function("json/decode_purchase_body", |b| {
        b.iter(|| {
            flashsale::extract::parse_json::<PurchaseBody>(std::hint::black_box(body))
                .expect("valid")
        })
    });
    let order = flashsale::db::orders::Order {
        id: 123_456,
        number: "2026-11-001234".into(),
        sale_id: Some(7),
        product_id: Some(3),
        user_id: 99_999,
        quantity: 1,
        unit_price_cents: Some(999),
        total_cents: 999,
        currency: "EUR".into(),
        lines: vec![flashsale::db::orders::OrderLine {
            product_id: 3,
            quantity: 1,
            unit_price_cents: 999,
            total_cents: 999,
        }],
        status: "pending_payment".into(),
        created_at: chrono::Utc::now(),
        expires_at: Some(chrono::Utc::now()),
        paid_at: None,
        released_at: None,
    };
    c.bench_function("json/encode_order", |b| {
        b.iter(|| serde_json::to_vec(std::hint::black_box(&order)).expect("encode"))
    });
}

/// A durable private cluster with one big sale; each measured batch buys with
/// fresh buyers made beforehand (outside the timing).
fn purchase(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = scratch_dir("flashsale-bench").expect("scratch dir");
    let pg = EmbeddedPg::start(&EmbeddedOptions {
        data_dir: dir.clone(),
        bin_dir: None,
        ephemeral: false,
        max_connections: 50,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (pool, sale_id) = rt.block_on(async {
        flashsale::run::create_database(&pg, "bench").await.expect("create db");
        let settings = flashsale::config::AppSettings::default();
        let pool = flashsale::db::connect(pg.connect_options("bench"), &settings, false).await.expect("pool");
        flashsale::db::migrate(pool.pool()).await.expect("migrate");
        let admin: i64 = sqlx::query_scalar(
            "insert into app_user (username, email, password_hash, role) values ('b', 'b@x.test', '!', 'admin') returning id",
        )
        .fetch_one(&pool)
        .await
        .expect("admin");
        let sale: i64 = sqlx::query_scalar(
            "with p as (insert into product (seller_id, name, price_cents) values ($1, 'bench', 100) returning id)
             insert into sale (product_id, starts_at, ends_at, stock, remaining, price_cents, created_by)
             select id, now() - interval '1 minute', now() + interval '1 day', 100000000, 100000000, 100, $1 from p
             returning id",
        )
        .bind(admin)
        .fetch_one(&pool)
        .await
        .expect("sale");
        (pool, sale)
    });
    let settings = PurchaseSettings {
        mode: PurchaseMode::PerPurchase,
        ..PurchaseSettings::default()
    };
    let engine = PurchaseEngine::new(pool.clone(), Board::new(pool.clone()), settings);
    let mut g = c.benchmark_group("purchase");
    g.sample_size(20);
    g.bench_function("one_buyer_per_transaction", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let users: Vec<i64> = sqlx::query_scalar(
                    "insert into app_user (username, email, password_hash)
                     select 'u' || g || '_' || md5(random()::text), md5(random()::text) || '@x.test', '!'
                       from generate_series(1, $1) g returning id",
                )
                .bind(iters as i64)
                .fetch_all(&pool)
                .await
                .expect("buyers");
                let start = Instant::now();
                for user_id in users {
                    engine
                        .purchase(PurchaseRequest {
                            sale_id,
                            user_id,
                            quantity: Quantity::parse(1).expect("1 is a quantity"),
                        })
                        .await
                        .expect("purchase");
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(pool.close());
    pg.stop();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, jwt, password, codec, purchase);
criterion_main!(benches);
