//! `Idempotency-Key` on purchases: a retry gets the first answer again and
//! never makes a second order, however many arrive at once.

use serde_json::{json, Value};
use tokio::task::JoinSet;

use flashsale::config::PurchaseMode;

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with, TestApp, TestUser};

/// A purchase with an `Idempotency-Key`: status, `Idempotent-Replayed`, body.
async fn buy_with_key(
    app: &TestApp,
    sale: i64,
    user: &TestUser,
    key: &str,
    body_json: &Value,
) -> (u16, bool, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/sales/{sale}/purchase")))
        .bearer_auth(&user.token)
        .header("Idempotency-Key", key)
        .json(body_json)
        .send()
        .await
        .expect("POST");
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let (status, v) = body(resp).await;
    (status, replayed, v)
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_and_no_second_order() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let buyer = app.create_customers(1).await.remove(0);

    let first = buy_with_key(&app, sale, &buyer, "k-1", &json!({"quantity": 1})).await;
    let again = buy_with_key(&app, sale, &buyer, "k-1", &json!({"quantity": 1})).await;

    assert_eq!((first.0, first.1), (201, false), "{}", first.2);
    assert_eq!((again.0, again.1), (201, true), "{}", again.2);
    assert_eq!(first.2, again.2, "the same order, byte for byte");
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        1
    );
}

#[tokio::test]
async fn a_refusal_is_replayed_too() {
    let app = spawn_app().await;
    let sale = app.active_sale(1).await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().expect("two");
    app.buy(sale, &a, 1).await;

    let first = buy_with_key(&app, sale, &b, "late", &json!({})).await;
    let again = buy_with_key(&app, sale, &b, "late", &json!({})).await;

    assert_eq!(first.0, 409, "{}", first.2);
    assert_eq!(first.2["error"]["code"], "sold_out");
    assert_eq!((again.0, again.1, &again.2), (409, true, &first.2));
}

#[tokio::test]
async fn the_same_key_on_another_request_is_idempotency_key_reused() {
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 10, 5).await["id"]
        .as_i64()
        .expect("id");
    let other = app.active_sale(10).await;
    let buyer = app.create_customers(1).await.remove(0);
    let (status, _, _) = buy_with_key(&app, sale, &buyer, "k", &json!({"quantity": 1})).await;
    assert_eq!(status, 201);

    let more = buy_with_key(&app, sale, &buyer, "k", &json!({"quantity": 2})).await;
    let elsewhere = buy_with_key(&app, other, &buyer, "k", &json!({"quantity": 1})).await;

    for (what, (status, _, v)) in [("another quantity", more), ("another sale", elsewhere)] {
        assert_eq!(status, 422, "{what}: {v}");
        assert_eq!(v["error"]["code"], "idempotency_key_reused", "{what}: {v}");
    }
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        1
    );
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().expect("two");

    let first = buy_with_key(&app, sale, &a, "shared", &json!({})).await;
    let second = buy_with_key(&app, sale, &b, "shared", &json!({})).await;

    assert_eq!((first.0, second.0, second.1), (201, 201, false));
    assert_ne!(first.2["id"], second.2["id"]);
}

#[tokio::test]
async fn simultaneous_retries_with_one_key_make_one_order_in_both_engines() {
    for mode in [PurchaseMode::Combined, PurchaseMode::PerPurchase] {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = app.active_sale(50).await;
        let buyer = app.create_customers(1).await.remove(0);

        // Twenty copies of one request at once: in the combined engine they
        // would land in one batch if the key let them through.
        let mut set = JoinSet::new();
        for _ in 0..20 {
            let (client, url, token) = (
                app.client.clone(),
                app.url(&format!("/api/v1/sales/{sale}/purchase")),
                buyer.token.clone(),
            );
            set.spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", "once")
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await
                    .expect("POST");
                body(resp).await
            });
        }
        let mut orders = Vec::new();
        while let Some(r) = set.join_next().await {
            let (status, v) = r.expect("task");
            match status {
                201 => orders.push(v["id"].clone()),
                409 => assert_eq!(v["error"]["code"], "request_in_progress", "{v}"),
                _ => panic!("{mode:?}: unexpected {status}: {v}"),
            }
        }

        assert!(!orders.is_empty(), "{mode:?}");
        assert!(
            orders.iter().all(|o| *o == orders[0]),
            "{mode:?}: one order for all: {orders:?}"
        );
        let rows = app
            .scalar_i64(&format!(
                "select count(*) from purchase_order where sale_id = {sale}"
            ))
            .await;
        assert_eq!(rows, 1, "{mode:?}");
    }
}

#[tokio::test]
async fn a_bad_key_is_validation_failed_and_writes_nothing() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let buyer = app.create_customers(1).await.remove(0);
    let too_long = "k".repeat(256);
    for bad in ["", "has space", too_long.as_str()] {
        let resp = app
            .client
            .post(app.url(&format!("/api/v1/sales/{sale}/purchase")))
            .bearer_auth(&buyer.token)
            .header("Idempotency-Key", bad)
            .send()
            .await
            .expect("POST");
        let v = assert_error(resp, 422, "validation_failed").await;
        assert!(
            v["error"]["details"]["fields"]["Idempotency-Key"].is_string(),
            "{v}"
        );
    }
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        0
    );
    assert_eq!(
        app.scalar_i64("select count(*) from idempotency_key").await,
        0
    );
}

#[tokio::test]
async fn already_purchased_names_the_live_order_without_a_key() {
    for mode in [PurchaseMode::Combined, PurchaseMode::PerPurchase] {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = app.active_sale(5).await;
        let buyer = app.create_customers(1).await.remove(0);
        let order = app.buy(sale, &buyer, 1).await;

        // Twice: the second refusal comes from memory in the combined engine.
        for _ in 0..2 {
            let v = assert_error(
                app.purchase(sale, &buyer, Some(1)).await,
                409,
                "already_purchased",
            )
            .await;
            assert_eq!(
                v["error"]["details"]["order_id"], order["id"],
                "{mode:?}: {v}"
            );
            assert_eq!(
                v["error"]["details"]["order_number"], order["number"],
                "{mode:?}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn a_known_holder_is_named_from_memory_without_asking_the_database() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let buyer = app.create_customers(1).await.remove(0);
    let order = app.buy(sale, &buyer, 1).await;

    // The server shares this pool: closed, the database is out of reach.
    app.pool.close().await;
    let v = assert_error(
        app.purchase(sale, &buyer, Some(1)).await,
        409,
        "already_purchased",
    )
    .await;

    assert_eq!(v["error"]["details"]["order_id"], order["id"], "{v}");
    assert_eq!(
        v["error"]["details"]["order_number"], order["number"],
        "{v}"
    );
}
