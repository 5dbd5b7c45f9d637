//! The engine behind PgBouncer in transaction-pooling mode, with fewer server
//! connections than the instance's pools: parallel purchases, a hold paid
//! through the provider's webhook, order history, and LISTEN (straight to the
//! cluster) carrying a sale's changes. Skipped with a message where
//! `pgbouncer` is not installed (scripts/test installs it).

use std::time::Duration;

use flashsale::db::{Databases, Db};
use flashsale::embedded_pg::{PgBouncer, POOL_ROLE};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::helpers::{body, embedded_cluster, serve_on, spawn_app, test_settings, TestApp};
use crate::holds::{hold_sale, invariants_hold, wait_for_status};
use crate::payments::{decide, open_payment, payments_consistent};

/// Server connections PgBouncer lends in all: fewer than the instance's
/// pools (20 shared + 8 of the purchase engine).
const POOL_SIZE: u32 = 4;

/// A second instance on `app`'s database whose pools go through a private
/// PgBouncer, or `None` (with the reason printed) where it cannot run.
async fn pooled_instance(app: &TestApp) -> Option<(TestApp, PgBouncer)> {
    let Some(pg) = embedded_cluster().await else {
        eprintln!("skipped: the pooler tests start PgBouncer in front of the launcher's own cluster, not DATABASE_URL");
        return None;
    };
    if PgBouncer::program().is_none() {
        eprintln!("skipped: pgbouncer is not installed (apt-get install pgbouncer; scripts/test installs it)");
        return None;
    }
    let dir = flashsale::embedded_pg::scratch_dir("flashsale-test-bouncer").expect("scratch");
    let bouncer = PgBouncer::start(pg, &dir, POOL_SIZE)
        .await
        .expect("start pgbouncer");
    let settings = test_settings();
    let primary = flashsale::db::connect(bouncer.connect_options(&app.db_name), &settings, true)
        .await
        .expect("connect through pgbouncer");
    let dbs = Databases {
        primary,
        listen: (*app.pool.connect_options()).clone(),
        listen_follower: None,
        read: None,
    };
    let pooled = serve_on(app.db_name.clone(), settings, dbs, app.pool.clone()).await;
    Some((pooled, bouncer))
}

/// Server connections PgBouncer holds open now.
async fn server_connections(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from pg_stat_activity where usename = $1")
        .bind(POOL_ROLE)
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity")
}

#[tokio::test]
async fn behind_pgbouncer_every_purchase_payment_and_announcement_holds() {
    let app = spawn_app().await;
    let Some((pooled, _bouncer)) = pooled_instance(&app).await else {
        return;
    };

    // 40 shoppers at once for 10 units, through 4 server connections.
    let sale = pooled.active_sale(10).await;
    let users = pooled.create_customers(40).await;
    let mut set = JoinSet::new();
    for u in users.clone() {
        let (client, url) = (
            pooled.client.clone(),
            pooled.url(&format!("/api/v1/sales/{sale}/purchase")),
        );
        set.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(&u.token)
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .expect("POST");
            r.status().as_u16()
        });
    }
    let mut created = 0;
    while let Some(status) = set.join_next().await {
        match status.expect("task") {
            201 => created += 1,
            409 => {}
            s => panic!("a purchase through the pooler answered {s}"),
        }
    }
    assert_eq!(created, 10);
    let (orders, remaining): (i64, i64) = sqlx::query_as(
        "select (select count(*) from purchase_order where sale_id = $1), remaining from sale where id = $1",
    )
    .bind(sale)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((orders, remaining), (10, 0));
    assert!(
        server_connections(&app.pool).await <= i64::from(POOL_SIZE),
        "PgBouncer opened more server connections than its pool"
    );

    // A hold, paid: the webhook comes back through the pooled instance.
    let held = hold_sale(&pooled, 5, 300).await;
    let buyer = &users[0];
    let order = pooled.buy(held, buyer, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&pooled, buyer, order).await;
    let (status, v) = decide(&pooled, &payment, "succeed").await;
    assert_eq!(status, 200, "{v}");
    wait_for_status(&app.pool, order, "paid").await;
    payments_consistent(&app).await;
    invariants_hold(&app.pool, held).await.unwrap();

    // The buyer's own orders, read through the pooler.
    let (status, mine) = body(pooled.get("/api/v1/orders", Some(&buyer.token)).await).await;
    assert_eq!(status, 200, "{mine}");
    let ids: Vec<i64> = mine["items"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["id"].as_i64())
        .collect();
    assert!(ids.contains(&order), "{mine}");

    // A change made through the other instance reaches the pooled one by
    // NOTIFY on its direct LISTEN connection: its board turns the sale away
    // as cancelled.
    let admin = app.create_user(flashsale::auth::Role::Admin).await;
    let fresh = app.active_sale(5).await;
    let late = pooled.create_customers(1).await;
    let (status, v) = body(
        pooled
            .get(&format!("/api/v1/sales/{fresh}/status"), None)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = body(
        app.patch(
            &format!("/api/v1/sales/{fresh}"),
            Some(&admin.token),
            &json!({"cancelled": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let mut answer = Value::Null;
    for _ in 0..100 {
        let (s, v) = body(pooled.purchase(fresh, &late[0], Some(1)).await).await;
        answer = json!({"status": s, "body": v});
        if v["error"]["code"] == "sale_cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer["body"]["error"]["code"], "sale_cancelled",
        "{answer}"
    );
}

/// The control: PgBouncer here really pools by transaction, so a client that
/// keeps named statements, as sqlx does by default, breaks on it. This is
/// what `DATABASE_POOLER=transaction` protects the engine from.
#[tokio::test]
async fn a_pool_with_named_statements_breaks_on_the_same_pgbouncer() {
    let app = spawn_app().await;
    let Some(pg) = embedded_cluster().await else {
        eprintln!("skipped: needs the launcher's own cluster");
        return;
    };
    if PgBouncer::program().is_none() {
        eprintln!("skipped: pgbouncer is not installed");
        return;
    }
    let dir = flashsale::embedded_pg::scratch_dir("flashsale-test-bouncer").expect("scratch");
    let bouncer = PgBouncer::start(pg, &dir, 1)
        .await
        .expect("start pgbouncer");
    let options = bouncer.connect_options(&app.db_name);
    let plain = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone().extra_float_digits(None))
        .await
        .expect("connect");
    let mut failures = 0;
    for r in sixteen_at_once(plain).await {
        if let Err(e) = r {
            assert!(e.to_string().contains("prepared statement"), "{e}");
            failures += 1;
        }
    }
    assert!(
        failures > 0,
        "named statements survived transaction pooling"
    );

    // The same statements on the engine's pooled handle all succeed.
    let settings = test_settings();
    let db: Db = flashsale::db::connect(options, &settings, true)
        .await
        .expect("connect");
    for r in sixteen_at_once(db).await {
        r.expect("a statement on the pooled handle");
    }
}

/// Sixteen statements at once on `pool`, each on its own task.
async fn sixteen_at_once<P>(pool: P) -> Vec<Result<i64, sqlx::Error>>
where
    P: Clone + Send + Sync + 'static,
    for<'e> &'e P: sqlx::PgExecutor<'e>,
{
    let mut set = JoinSet::new();
    for i in 0..16i64 {
        let pool = pool.clone();
        set.spawn(async move {
            sqlx::query_scalar::<_, i64>("select $1::bigint")
                .bind(i)
                .fetch_one(&pool)
                .await
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.push(r.expect("task"));
    }
    all
}
