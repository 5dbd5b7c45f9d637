//! A streaming replica for reads (`DATABASE_READ_URL`), for real: a private
//! primary and a hot standby made from it by `pg_basebackup`. The catalog is
//! read from the replica while it is fresh and from the primary while its
//! replay is paused; purchases and a shopper's own orders always go to the
//! primary; `/readyz` and `/metrics` say what the replica is doing.

use std::time::{Duration, Instant};

use flashsale::auth::Role;
use flashsale::db::Databases;
use flashsale::embedded_pg::{scratch_dir, EmbeddedOptions, EmbeddedPg};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::helpers::{body, serve_on, test_settings, TestApp};

/// The database of the private primary and its standby.
pub(crate) const DB: &str = "shop";
const MAX_LAG: Duration = Duration::from_millis(400);

/// Polls `/readyz` until the replica's `fresh` is `want` (at most 20 s).
async fn until_fresh(app: &TestApp, want: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = body(app.get("/readyz", None).await).await;
        assert_eq!(status, 200, "{v}");
        if v["databases"]["replica"]["fresh"] == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never read fresh={want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads served by `role` so far, from `/metrics`.
async fn reads_by(app: &TestApp, role: &str) -> f64 {
    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    let prefix = format!("flashsale_db_reads_total{{role=\"{role}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |n| n.trim().parse().expect("a count"))
}

/// The names of the catalog's books as `GET /products` lists them.
async fn catalog(app: &TestApp) -> Vec<String> {
    let (status, v) = body(app.get("/api/v1/products?limit=100", None).await).await;
    assert_eq!(status, 200, "{v}");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn list_book(app: &TestApp, token: &str, name: &str) {
    let (status, v) = body(
        app.post(
            "/api/v1/products",
            Some(token),
            &serde_json::json!({"name": name, "description": "pages", "price_cents": 900}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
}

/// A private primary in a scratch directory named after `name`, with the
/// migrated database [`DB`], a pool to it, and a hot standby streaming
/// from it; and the directory to remove at the end.
pub(crate) async fn primary_and_standby(
    name: &str,
) -> (
    std::sync::Arc<EmbeddedPg>,
    EmbeddedPg,
    PgPool,
    std::path::PathBuf,
) {
    let dir = scratch_dir(name).expect("scratch");
    let options = |d: &str| EmbeddedOptions {
        data_dir: dir.join(d),
        bin_dir: None,
        ephemeral: true,
        max_connections: 100,
    };
    let primary_opts = options("primary");
    let primary = tokio::task::spawn_blocking(move || EmbeddedPg::start(&primary_opts))
        .await
        .unwrap()
        .expect("start the primary");
    flashsale::run::create_database(&primary, DB)
        .await
        .expect("create the database");
    let pool: PgPool = PgPoolOptions::new()
        .max_connections(5)
        .connect_with(primary.connect_options(DB))
        .await
        .expect("connect");
    flashsale::db::migrate(&pool).await.expect("migrate");
    let primary = std::sync::Arc::new(primary);
    let (p, standby_opts) = (primary.clone(), options("standby"));
    let standby = tokio::task::spawn_blocking(move || EmbeddedPg::start_standby(&p, &standby_opts))
        .await
        .unwrap()
        .expect("start the standby");
    (primary, standby, pool, dir)
}

#[tokio::test]
async fn the_catalog_reads_the_replica_while_it_is_fresh_and_the_primary_while_it_lags() {
    let (primary, standby, pool, dir) = primary_and_standby("flashsale-test-replica").await;

    let settings = test_settings();
    let dbs = Databases {
        primary: flashsale::db::connect(primary.connect_options(DB), &settings, false)
            .await
            .expect("the primary's pool"),
        listen: primary.connect_options(DB),
        listen_follower: None,
        read: Some((
            flashsale::db::connect_lazy(standby.connect_options(DB), &settings, false),
            MAX_LAG,
        )),
    };
    let app = serve_on(DB.into(), settings, dbs, pool.clone()).await;
    until_fresh(&app, true).await;

    // A book listed on the primary reaches the catalog through the replica.
    let seller = app.create_user(Role::Seller).await;
    list_book(&app, &seller.token, "Streamed").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !catalog(&app).await.contains(&"Streamed".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the replica never showed the book"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let on_replica = reads_by(&app, "replica").await;
    assert!(on_replica > 0.0, "no read was served by the replica");
    let v = until_fresh(&app, true).await;
    assert_eq!(v["databases"]["primary"], "ok", "{v}");
    assert_eq!(v["databases"]["replica"]["reachable"], true, "{v}");

    // Replay paused: the replica falls behind once the primary writes, and
    // the catalog is read from the primary, which has the new book at once.
    let standby_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(standby.connect_options(DB))
        .await
        .expect("connect to the standby");
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&standby_pool)
        .await
        .expect("pause replay");
    list_book(&app, &seller.token, "Written while paused").await;
    let v = until_fresh(&app, false).await;
    assert!(
        v["databases"]["replica"]["lag_bytes"].as_i64().unwrap() > 0,
        "{v}"
    );
    let (replica_before, primary_before) = (
        reads_by(&app, "replica").await,
        reads_by(&app, "primary").await,
    );
    assert!(catalog(&app)
        .await
        .contains(&"Written while paused".to_string()));
    assert_eq!(reads_by(&app, "replica").await, replica_before);
    assert!(reads_by(&app, "primary").await > primary_before);

    // Purchases and a shopper's own orders go to the primary meanwhile.
    let sale = app.active_sale(3).await;
    let buyer = app.create_customers(1).await.remove(0);
    let order = app.buy(sale, &buyer, 1).await["id"].as_i64().unwrap();
    let (status, mine) = body(app.get("/api/v1/orders", Some(&buyer.token)).await).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["items"][0]["id"].as_i64(), Some(order), "{mine}");

    // Replay resumed: the replica catches up and serves again.
    sqlx::query("select pg_wal_replay_resume()")
        .execute(&standby_pool)
        .await
        .expect("resume replay");
    until_fresh(&app, true).await;
    let replica_before = reads_by(&app, "replica").await;
    assert!(catalog(&app)
        .await
        .contains(&"Written while paused".to_string()));
    assert!(reads_by(&app, "replica").await > replica_before);

    app.stop().await;
    standby_pool.close().await;
    tokio::task::spawn_blocking(move || {
        standby.stop();
        primary.stop();
    })
    .await
    .ok();
    let _ = std::fs::remove_dir_all(dir);
}
