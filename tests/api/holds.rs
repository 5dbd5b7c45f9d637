//! Holds: a win on a sale with `hold_secs` waits for payment until
//! `expires_at`, and a hold that ends unpaid (expired, cancelled) gives its
//! unit back to the stock, to be sold again. Real requests, then the
//! database is checked; the stock invariants are also sampled while holds
//! come and go.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::task::JoinSet;

use flashsale::auth::Role;
use flashsale::config::PurchaseMode;

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with, TestApp, TestUser};

const BOTH: [PurchaseMode; 2] = [PurchaseMode::Combined, PurchaseMode::PerPurchase];

/// A sale open now for an hour whose winners have `hold_secs` to pay.
pub(crate) async fn hold_sale(app: &TestApp, stock: i64, hold_secs: i64) -> i64 {
    let product = app.create_product(2500).await;
    let admin = app.create_user(Role::Admin).await;
    let starts = app.db_now().await - chrono::Duration::seconds(60);
    let (status, v) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({"product_id": product, "starts_at": starts,
                    "ends_at": starts + chrono::Duration::seconds(3600),
                    "stock": stock, "price_cents": 1000, "hold_secs": hold_secs}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["hold_secs"], hold_secs, "{v}");
    v["id"].as_i64().expect("sale id")
}

/// The stock invariants of one sale, read in one snapshot:
/// `remaining + live units = stock` and `sell_count = live units`.
pub(crate) async fn invariants_hold(pool: &PgPool, sale: i64) -> Result<(), String> {
    let (stock, remaining, sell_count, live): (i64, i64, i64, i64) = sqlx::query_as(
        "select s.stock, s.remaining, p.sell_count,
                (select coalesce(sum(quantity), 0)::bigint from purchase_order o
                  where o.sale_id = s.id and o.status in ('pending_payment', 'paid', 'confirmed'))
           from sale s join product p on p.id = s.product_id where s.id = $1",
    )
    .bind(sale)
    .fetch_one(pool)
    .await
    .map_err(|e| e.to_string())?;
    if remaining + live == stock && sell_count == live {
        Ok(())
    } else {
        Err(format!(
            "stock {stock}, remaining {remaining}, live units {live}, sell_count {sell_count}"
        ))
    }
}

/// Polls `order`'s status until it is `want`, for at most 10 s.
pub(crate) async fn wait_for_status(pool: &PgPool, order: i64, want: &str) {
    wait_for_row_status(pool, "purchase_order", &order.to_string(), want).await
}

/// Polls the `status` of row `id` of `table` until it is `want`, for at most
/// 10 s.
pub(crate) async fn wait_for_row_status(pool: &PgPool, table: &str, id: &str, want: &str) {
    let start = Instant::now();
    loop {
        let status: String =
            sqlx::query_scalar(&format!("select status from {table} where id::text = $1"))
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("read {table} {id}: {e}"));
        if status == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{table} {id} is still {status}, not {want}, after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[tokio::test]
async fn a_win_on_a_sale_with_a_hold_waits_for_payment_until_expires_at() {
    for mode in BOTH {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = hold_sale(&app, 5, 600).await;
        let buyer = app.create_customers(1).await.remove(0);

        let order = app.buy(sale, &buyer, 1).await;

        assert_eq!(order["status"], "pending_payment", "{mode:?}: {order}");
        let held_for = ts(&order["expires_at"]) - ts(&order["created_at"]);
        assert_eq!(held_for.num_seconds(), 600, "{mode:?}: {order}");
        let admin = app.create_user(Role::Admin).await;
        let (_, stats) = body(
            app.get(
                &format!("/api/v1/admin/sales/{sale}/stats"),
                Some(&admin.token),
            )
            .await,
        )
        .await;
        assert_eq!(
            (&stats["sold"], &stats["pending"], &stats["paid"]),
            (&json!(1), &json!(1), &json!(0)),
            "{mode:?}: {stats}"
        );
        assert_eq!(stats["revenue_cents"], 0, "a hold is not revenue: {stats}");
        // No confirmation for an order that is not paid for.
        assert_eq!(app.scalar_i64("select count(*) from outbox").await, 0);
        invariants_hold(&app.pool, sale).await.expect("invariants");
    }
}

#[tokio::test]
async fn a_sale_without_a_hold_confirms_at_once() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 5, 0).await;
    let buyer = app.create_customers(1).await.remove(0);

    let order = app.buy(sale, &buyer, 1).await;

    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["expires_at"], Value::Null, "{order}");
}

#[tokio::test]
async fn an_unpaid_hold_expires_and_its_unit_is_sold_to_the_next_shopper() {
    for mode in BOTH {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = hold_sale(&app, 1, 1).await;
        let [first, second]: [TestUser; 2] = app.create_customers(2).await.try_into().expect("two");

        let held = app.buy(sale, &first, 1).await;
        assert_error(app.purchase(sale, &second, Some(1)).await, 409, "sold_out").await;
        wait_for_status(&app.pool, held["id"].as_i64().expect("id"), "expired").await;

        invariants_hold(&app.pool, sale)
            .await
            .expect("after the expiry");
        let order = app.buy(sale, &second, 1).await;
        assert_eq!(order["status"], "pending_payment", "{mode:?}: {order}");
        invariants_hold(&app.pool, sale)
            .await
            .expect("after the second sale");
        let released: Option<DateTime<Utc>> =
            sqlx::query_scalar("select released_at from purchase_order where id = $1")
                .bind(held["id"].as_i64())
                .fetch_one(&app.pool)
                .await
                .expect("read");
        assert!(released.is_some(), "{mode:?}: the expiry is dated");
        // The buyer is told, once, by an email that committed with the release.
        let emails = app
            .scalar_i64(&format!(
                "select count(*) from outbox where kind = 'hold_expired' and order_id = {}
                    and user_id = {}",
                held["id"], first.id
            ))
            .await;
        assert_eq!(emails, 1, "{mode:?}");
    }
}

#[tokio::test]
async fn a_shopper_whose_hold_expired_may_buy_again() {
    for mode in BOTH {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = hold_sale(&app, 5, 1).await;
        let buyer = app.create_customers(1).await.remove(0);
        let first = app.buy(sale, &buyer, 1).await;
        // While the hold lives, the shopper holds the sale's one order
        // (this also teaches the live board that they are a holder).
        assert_error(
            app.purchase(sale, &buyer, Some(1)).await,
            409,
            "already_purchased",
        )
        .await;

        wait_for_status(&app.pool, first["id"].as_i64().expect("id"), "expired").await;
        let again = app.buy(sale, &buyer, 1).await;

        assert_ne!(again["id"], first["id"], "{mode:?}");
        assert_ne!(again["number"], first["number"], "{mode:?}");
        let live = app
            .scalar_i64(&format!(
                "select count(*) from purchase_order where sale_id = {sale} and user_id = {}
                    and status in ('pending_payment', 'paid', 'confirmed')",
                buyer.id
            ))
            .await;
        assert_eq!(live, 1, "{mode:?}: one live order per shopper");
        invariants_hold(&app.pool, sale).await.expect("invariants");
    }
}

/// Buys with each shopper at once; returns how many got 201, and asserts
/// every other answer is `sold_out`.
async fn buy_all_at_once(app: &TestApp, sale: i64, shoppers: &[TestUser]) -> Vec<Value> {
    let mut set = JoinSet::new();
    for s in shoppers {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/v1/sales/{sale}/purchase")),
            s.token.clone(),
        );
        set.spawn(async move {
            body(
                client
                    .post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("POST"),
            )
            .await
        });
    }
    let mut orders = Vec::new();
    while let Some(r) = set.join_next().await {
        let (status, v) = r.expect("task");
        match status {
            201 => orders.push(v),
            409 => assert_eq!(v["error"]["code"], "sold_out", "{v}"),
            _ => panic!("unexpected answer {status}: {v}"),
        }
    }
    orders
}

#[tokio::test]
async fn a_storm_of_abandoned_holds_all_comes_back_and_is_sold_again() {
    for mode in BOTH {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let stock = 20;
        let sale = hold_sale(&app, stock, 1).await;
        let shoppers = app.create_customers(80).await;
        let (first, later) = shoppers.split_at(40);

        // Forty shoppers race for twenty units; the winners walk away.
        let won = buy_all_at_once(&app, sale, first).await;
        assert_eq!(won.len() as i64, stock, "{mode:?}");
        for order in &won {
            wait_for_status(&app.pool, order["id"].as_i64().expect("id"), "expired").await;
        }
        invariants_hold(&app.pool, sale)
            .await
            .expect("after the expiries");
        let remaining = app
            .scalar_i64(&format!("select remaining from sale where id = {sale}"))
            .await;
        assert_eq!(remaining, stock, "{mode:?}: every unit came back");

        // Forty others race for the same twenty units again.
        let again = buy_all_at_once(&app, sale, later).await;
        assert_eq!(again.len() as i64, stock, "{mode:?}: sold again, exactly");
        invariants_hold(&app.pool, sale)
            .await
            .expect("after the second storm");
    }
}

#[tokio::test]
async fn invariants_hold_at_every_sample_while_holds_expire_under_purchases() {
    let app = spawn_app().await;
    let stock = 30;
    let sale = hold_sale(&app, stock, 1).await;
    let shoppers = app.create_customers(300).await;
    let checker = {
        let pool = app.fresh_pool().await;
        tokio::spawn(async move {
            let mut samples = 0;
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                invariants_hold(&pool, sale)
                    .await
                    .unwrap_or_else(|e| panic!("sample {samples}: {e}"));
                samples += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            samples
        })
    };

    // Waves of shoppers arrive while earlier holds run out.
    let mut won = 0;
    for wave in shoppers.chunks(60) {
        won += buy_all_at_once(&app, sale, wave).await.len();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    let samples = checker.await.expect("the checker");
    assert!(samples > 10, "only {samples} samples");
    assert!(
        won as i64 > stock,
        "expired units were sold again: {won} wins"
    );
    invariants_hold(&app.pool, sale).await.expect("at the end");
}

#[tokio::test]
async fn an_admin_cancels_a_hold_and_its_unit_goes_back() {
    for mode in BOTH {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = hold_sale(&app, 3, 600).await;
        let [buyer, other]: [TestUser; 2] = app.create_customers(2).await.try_into().expect("two");
        let admin = app.create_user(Role::Admin).await;
        let order = app.buy(sale, &buyer, 1).await;
        let path = format!("/api/v1/admin/orders/{}/cancel", order["id"]);

        assert_error(
            app.post(&path, Some(&buyer.token), &json!({})).await,
            403,
            "forbidden",
        )
        .await;
        let (status, cancelled) = body(app.post(&path, Some(&admin.token), &json!({})).await).await;

        assert_eq!(status, 200, "{mode:?}: {cancelled}");
        assert_eq!(cancelled["status"], "cancelled", "{mode:?}");
        assert!(!cancelled["released_at"].is_null(), "{mode:?}: {cancelled}");
        let emails = app
            .scalar_i64(&format!(
                "select count(*) from outbox where kind = 'order_cancelled' and order_id = {}",
                order["id"]
            ))
            .await;
        assert_eq!(emails, 1, "{mode:?}: the buyer is told");
        invariants_hold(&app.pool, sale)
            .await
            .expect("after the cancel");
        assert_eq!(
            app.scalar_i64(&format!("select remaining from sale where id = {sale}"))
                .await,
            3
        );
        // The buyer may buy again; the other shopper too.
        app.buy(sale, &buyer, 1).await;
        app.buy(sale, &other, 1).await;
        assert_error(
            app.post(
                "/api/v1/admin/orders/999999/cancel",
                Some(&admin.token),
                &json!({}),
            )
            .await,
            404,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn an_expired_order_cannot_be_cancelled_and_a_confirmed_one_can() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().expect("two");
    let short = hold_sale(&app, 2, 1).await;
    let expired = app.buy(short, &a, 1).await;
    wait_for_status(&app.pool, expired["id"].as_i64().expect("id"), "expired").await;
    let instant = hold_sale(&app, 2, 0).await;
    let confirmed = app.buy(instant, &b, 1).await;

    let refused = assert_error(
        app.post(
            &format!("/api/v1/admin/orders/{}/cancel", expired["id"]),
            Some(&admin.token),
            &json!({}),
        )
        .await,
        409,
        "order_not_cancellable",
    )
    .await;
    let (status, v) = body(
        app.post(
            &format!("/api/v1/admin/orders/{}/cancel", confirmed["id"]),
            Some(&admin.token),
            &json!({}),
        )
        .await,
    )
    .await;

    assert!(refused["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("expired"));
    assert_eq!((status, &v["status"]), (200, &json!("cancelled")), "{v}");
    invariants_hold(&app.pool, short).await.expect("short");
    invariants_hold(&app.pool, instant).await.expect("instant");
}

#[tokio::test]
async fn cancelling_a_live_sale_cancels_its_holds() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = hold_sale(&app, 10, 600).await;
    let buyers = app.create_customers(4).await;
    for b in &buyers {
        app.buy(sale, b, 1).await;
    }

    let (status, v) = body(
        app.patch(
            &format!("/api/v1/sales/{sale}"),
            Some(&admin.token),
            &json!({"cancelled": true}),
        )
        .await,
    )
    .await;

    assert_eq!(status, 200, "{v}");
    assert_eq!(v["remaining"], 10, "every hold came back: {v}");
    let cancelled = app
        .scalar_i64(&format!(
            "select count(*) from purchase_order where sale_id = {sale} and status = 'cancelled'"
        ))
        .await;
    assert_eq!(cancelled, 4);
    assert_eq!(
        app.scalar_i64("select count(*) from outbox where kind = 'order_cancelled'")
            .await,
        4,
        "every buyer is told"
    );
    invariants_hold(&app.pool, sale).await.expect("invariants");
}

#[tokio::test]
async fn another_instance_releases_the_holds_of_one_that_stopped() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    let sale = hold_sale(&first, 1, 1).await;
    let [a, b]: [TestUser; 2] = first.create_customers(2).await.try_into().expect("two");
    let held = first.buy(sale, &a, 1).await;
    // The instance that sold the hold stops: its sweeper with it.
    first.stop().await;

    wait_for_status(&second.pool, held["id"].as_i64().expect("id"), "expired").await;
    let order = second.buy(sale, &b, 1).await;

    assert_eq!(order["status"], "pending_payment", "{order}");
    invariants_hold(&second.pool, sale)
        .await
        .expect("invariants");
}

#[tokio::test]
async fn hold_secs_outside_0_to_3600_is_refused() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let product = app.create_product(100).await;
    let starts = app.db_now().await + chrono::Duration::seconds(600);
    for bad in [json!(-1), json!(3601), json!("ten")] {
        let v = assert_error(
            app.post(
                "/api/v1/sales",
                Some(&admin.token),
                &json!({"product_id": product, "starts_at": starts,
                        "ends_at": starts + chrono::Duration::seconds(60),
                        "stock": 5, "hold_secs": bad}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(
            v["error"]["details"]["fields"]["hold_secs"].is_string(),
            "{bad}: {v}"
        );
    }
    assert_eq!(app.scalar_i64("select count(*) from sale").await, 0);
}
