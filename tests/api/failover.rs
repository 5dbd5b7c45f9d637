//! Failover, for real: a private primary with a synchronous hot standby, and
//! an instance given both hosts (as `DATABASE_URL=…host1,host2…` would). The
//! primary is stopped at once mid-sale and the standby promoted: the instance
//! answers only 201 or `busy` meanwhile, follows the new primary without a
//! restart (its pools and its `LISTEN`), and not one acknowledged order is
//! lost.

use std::time::{Duration, Instant};

use flashsale::db::failover::Follower;
use flashsale::db::Databases;
use futures_util::future::join_all;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::helpers::{body, serve_on, test_settings, TestApp, TestUser};
use crate::replica::{primary_and_standby, DB};

/// `/readyz`'s `databases`.
async fn databases(app: &TestApp) -> Value {
    let (status, v) = body(app.get("/readyz", None).await).await;
    assert_eq!(status, 200, "{v}");
    v["databases"].clone()
}

/// Buys one unit as each of `buyers` at once; the order ids of the 201s.
/// Every other answer must be `busy`.
async fn buy_all(app: &TestApp, sale: i64, buyers: &[TestUser]) -> Vec<i64> {
    let answers = join_all(
        buyers
            .iter()
            .map(|b| async move { body(app.purchase(sale, b, Some(1)).await).await }),
    )
    .await;
    let mut orders = Vec::new();
    for (status, v) in answers {
        match status {
            201 => orders.push(v["id"].as_i64().expect("order id")),
            503 => assert_eq!(v["error"]["code"], "busy", "{v}"),
            _ => panic!("a purchase during a failover answered {status}: {v}"),
        }
    }
    orders
}

#[tokio::test]
async fn an_instance_follows_a_promoted_standby_and_loses_no_acknowledged_order() {
    let (primary, standby, pool, dir) = primary_and_standby("flashsale-test-failover").await;
    // Synchronous: a commit is acknowledged once the standby has flushed it.
    flashsale::embedded_pg::make_synchronous(&pool, DB)
        .await
        .expect("a synchronous standby");

    // The standby first: the follower must pass over it to the primary.
    let follower = Follower::find(vec![
        standby.connect_options(DB),
        primary.connect_options(DB),
    ])
    .await
    .expect("a host that accepts writes");
    let settings = test_settings();
    let dbs = Databases {
        primary: flashsale::db::connect_following(&follower, &settings, false)
            .await
            .expect("the primary's pool"),
        listen: follower.current(),
        listen_follower: Some(follower.clone()),
        read: None,
    };
    let app = serve_on(DB.into(), settings, dbs, pool.clone()).await;
    let before = databases(&app).await;

    assert_eq!(before["following"]["failovers"], 0, "{before}");
    let primary_host = before["following"]["host"].clone();

    let sale = app.active_sale(200).await;
    let buyers = app.create_customers(120).await;
    let mut acknowledged = buy_all(&app, sale, &buyers[..40]).await;
    assert_eq!(acknowledged.len(), 40, "every purchase before the failover");

    // Mid-sale, with purchases in flight: the primary stops at once and the
    // standby is promoted.
    let storm = buy_all(&app, sale, &buyers[40..80]);
    let fail_over = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let p = primary.clone();
        tokio::task::spawn_blocking(move || p.stop_immediately())
            .await
            .unwrap();
        standby.promote().await.expect("promote the standby");
    };
    let (during, ()) = tokio::join!(storm, fail_over);
    acknowledged.extend(during);

    // The instance carries on against the new primary, without a restart:
    // each late buyer tries until a 201 (busy meanwhile).
    let deadline = Instant::now() + Duration::from_secs(60);
    for b in &buyers[80..] {
        loop {
            let got = buy_all(&app, sale, std::slice::from_ref(b)).await;
            if let Some(id) = got.first() {
                acknowledged.push(*id);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no 201 within 60 s of the promotion"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let after = databases(&app).await;
    assert_eq!(after["following"]["failovers"], 1, "{after}");
    assert_ne!(after["following"]["host"], primary_host, "{after}");

    // Every acknowledged order is on the promoted standby, and the stock
    // adds up there.
    let promoted: PgPool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(standby.connect_options(DB))
        .await
        .expect("connect to the promoted standby");
    let found: Vec<i64> = sqlx::query_scalar("select id from purchase_order where id = any($1)")
        .bind(&acknowledged)
        .fetch_all(&promoted)
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        acknowledged.len(),
        "acknowledged orders lost in the failover"
    );
    let (stock, remaining, sold): (i64, i64, i64) = sqlx::query_as(
        "select s.stock, s.remaining,
                (select coalesce(sum(quantity), 0)::bigint from purchase_order o
                  where o.sale_id = s.id and o.status in ('pending_payment', 'paid', 'confirmed'))
           from sale s where s.id = $1",
    )
    .bind(sale)
    .fetch_one(&promoted)
    .await
    .unwrap();
    assert_eq!(sold + remaining, stock);

    // Its LISTEN followed too: an announcement made on the new primary
    // reaches the live board (remaining 0, from memory). Announcements sent
    // before the LISTEN connection is back are gone (the board reloads from
    // the database when it reconnects), so it is sent until heard.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sqlx::query("select pg_notify('flashsale_sale', $1)")
            .bind(format!("{sale}:0"))
            .execute(&promoted)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, v) = body(app.get(&format!("/api/v1/sales/{sale}/status"), None).await).await;
        assert_eq!(status, 200, "{v}");
        if v["remaining"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the announcement on the new primary was never heard: {v}"
        );
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("flashsale_db_primary_failovers 1"),
        "{metrics}"
    );
    promoted.close().await;
    app.stop().await;
    tokio::task::spawn_blocking(move || standby.stop())
        .await
        .ok();
    let _ = std::fs::remove_dir_all(dir);
}
