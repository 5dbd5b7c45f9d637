//! Paying for holds through the built-in test provider: the three outcomes,
//! late payments both ways, refunds, forged and repeated webhooks, and
//! simultaneous pays. The provider's webhooks travel for real, through the
//! outbox to the server's own webhook route; the database is checked after.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::task::JoinSet;

use flashsale::auth::Role;
use flashsale::payment::signature;

use crate::helpers::{assert_error, body, spawn_app, TestApp, TestUser, WEBHOOK_SECRET};
use crate::holds::{hold_sale, invariants_hold, wait_for_row_status, wait_for_status};

/// `POST /orders/{id}/pay` as `user`: status and body.
pub(crate) async fn pay(app: &TestApp, user: &TestUser, order: i64) -> (u16, Value) {
    body(
        app.post(
            &format!("/api/v1/orders/{order}/pay"),
            Some(&user.token),
            &json!({}),
        )
        .await,
    )
    .await
}

/// A payment that must open (201); returns it.
pub(crate) async fn open_payment(app: &TestApp, user: &TestUser, order: i64) -> Value {
    let (status, p) = pay(app, user, order).await;
    assert_eq!(status, 201, "{p}");
    p
}

/// The test provider decides a charge (`succeed`, `fail`, or a card).
pub(crate) async fn decide(app: &TestApp, payment: &Value, how: &str) -> (u16, Value) {
    let id = payment["id"].as_str().expect("payment id");
    let resp = match how {
        "succeed" | "fail" => {
            app.post(
                &format!("/api/v1/test-provider/payments/{id}/{how}"),
                None,
                &json!({}),
            )
            .await
        }
        card => {
            app.post(
                &format!("/api/v1/test-provider/payments/{id}/card"),
                None,
                &json!({ "number": card }),
            )
            .await
        }
    };
    body(resp).await
}

/// Polls the payment's status until it is `want`, for at most 10 s.
pub(crate) async fn wait_for_payment(pool: &PgPool, payment: &Value, want: &str) {
    let id = payment["id"].as_str().expect("payment id");
    wait_for_row_status(pool, "payment", id, want).await
}

/// Emails of `kind` queued for `order`.
pub(crate) async fn emails(app: &TestApp, kind: &str, order: i64) -> i64 {
    app.scalar_i64(&format!(
        "select count(*) from outbox where kind = '{kind}' and order_id = {order}"
    ))
    .await
}

/// The payment invariants: every paid order has exactly one succeeded
/// payment, and every payment that succeeded belongs to a paid or refunded
/// order.
pub(crate) async fn payments_consistent(app: &TestApp) {
    let paid_without: i64 = app
        .scalar_i64(
            "select count(*) from purchase_order o where o.status = 'paid'
               and (select count(*) from payment p
                     where p.order_id = o.id and p.status = 'succeeded') <> 1",
        )
        .await;
    let stray: i64 = app
        .scalar_i64(
            "select count(*) from payment p join purchase_order o on o.id = p.order_id
              where p.status in ('succeeded', 'refunding', 'refunded')
                and o.status not in ('paid', 'refunded')",
        )
        .await;
    assert_eq!(
        (paid_without, stray),
        (0, 0),
        "payments and orders disagree"
    );
}

/// A signed delivery of `event` to the webhook route.
async fn deliver(app: &TestApp, event: &Value, secret: &[u8], at: i64) -> reqwest::Response {
    let raw = serde_json::to_vec(event).unwrap();
    app.client
        .post(app.url("/api/v1/payments/webhook"))
        .header(signature::HEADER, signature::sign(secret, at, &raw))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("POST webhook")
}

fn event(id: &str, kind: &str, payment: &Value) -> Value {
    json!({"id": id, "type": kind, "data": {
        "payment_id": payment["id"], "order_id": payment["order_id"],
        "amount_cents": payment["amount_cents"], "currency": payment["currency"]}})
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn paying_with_4242_makes_the_order_paid() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 3, 600).await;
    let shopper = app.create_customers(1).await.remove(0);
    let order = app.buy(sale, &shopper, 1).await;
    let order_id = order["id"].as_i64().unwrap();

    let payment = open_payment(&app, &shopper, order_id).await;
    assert_eq!(payment["status"], "open");
    assert_eq!(payment["provider"], "test");
    assert_eq!(payment["amount_cents"], order["total_cents"]);
    let id = payment["id"].as_str().unwrap();
    assert!(
        payment["redirect_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pay/{id}")),
        "{payment}"
    );
    // Asking again returns the open one.
    let (status, again) = pay(&app, &shopper, order_id).await;
    assert_eq!((status, &again["id"]), (200, &payment["id"]), "{again}");

    let (status, charge) = decide(&app, &payment, "4242 4242 4242 4242").await;
    assert_eq!(
        (status, charge["status"].as_str()),
        (200, Some("succeeded")),
        "{charge}"
    );
    assert_eq!(charge["card_last4"], "4242");
    wait_for_status(&app.pool, order_id, "paid").await;
    wait_for_payment(&app.pool, &payment, "succeeded").await;

    let (_, seen) = body(
        app.get(&format!("/api/v1/orders/{order_id}"), Some(&shopper.token))
            .await,
    )
    .await;
    assert_eq!(seen["status"], "paid");
    assert!(seen["paid_at"].is_string(), "{seen}");
    assert_eq!(emails(&app, "payment_received", order_id).await, 1);
    invariants_hold(&app.pool, sale).await.unwrap();
    payments_consistent(&app).await;
    // A charge is decided once.
    let (status, v) = decide(&app, &payment, "fail").await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "payment_not_open");
    // Paid: nothing more to pay.
    let (status, v) = pay(&app, &shopper, order_id).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("order_not_payable")),
        "{v}"
    );

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
        (stats["paid"].as_i64(), stats["pending"].as_i64()),
        (Some(1), Some(0)),
        "{stats}"
    );
}

#[tokio::test]
async fn a_declined_card_fails_the_payment_and_the_unit_goes_to_the_next_shopper() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 600).await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().unwrap();
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    assert_error(app.purchase(sale, &b, Some(1)).await, 409, "sold_out").await;

    let payment = open_payment(&app, &a, order_id).await;
    let (status, charge) = decide(&app, &payment, "4000 0000 0000 0002").await;
    assert_eq!(
        (status, charge["status"].as_str()),
        (200, Some("failed")),
        "{charge}"
    );
    wait_for_status(&app.pool, order_id, "payment_failed").await;
    wait_for_payment(&app.pool, &payment, "failed").await;

    assert_eq!(emails(&app, "payment_failed", order_id).await, 1);
    invariants_hold(&app.pool, sale).await.unwrap();
    // The unit is back: the next shopper wins it.
    app.buy(sale, &b, 1).await;
    invariants_hold(&app.pool, sale).await.unwrap();
    // A failed order cannot be paid.
    let (status, v) = pay(&app, &a, order_id).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("order_not_payable")),
        "{v}"
    );
}

#[tokio::test]
async fn not_a_test_card_is_refused_and_decides_nothing() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 600).await;
    let a = app.create_customers(1).await.remove(0);
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, order_id).await;
    let (status, v) = decide(&app, &payment, "1234 5678 9012 3456").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    let id = payment["id"].as_str().unwrap();
    let (_, charge) = body(
        app.get(&format!("/api/v1/test-provider/payments/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(charge["status"], "open", "{charge}");
    assert_eq!(
        app.scalar_i64("select count(*) from outbox where kind = 'payment_webhook'")
            .await,
        0
    );
}

#[tokio::test]
async fn paying_is_refused_for_others_orders_orders_without_a_hold_and_run_out_holds() {
    let app = spawn_app().await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().unwrap();
    let held = hold_sale(&app, 5, 1).await;
    let order_id = app.buy(held, &a, 1).await["id"].as_i64().unwrap();
    // Someone else's order does not exist for them.
    assert_error(
        app.post(
            &format!("/api/v1/orders/{order_id}/pay"),
            Some(&b.token),
            &json!({}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // A confirmed order (no hold) has nothing to pay.
    let free = app.active_sale(5).await;
    let confirmed = app.buy(free, &a, 1).await["id"].as_i64().unwrap();
    let (status, v) = pay(&app, &a, confirmed).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("order_not_payable")),
        "{v}"
    );
    // A hold that ran out: refused whether or not the sweeper released it yet.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, v) = pay(&app, &a, order_id).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("hold_expired")),
        "{v}"
    );
    wait_for_status(&app.pool, order_id, "expired").await;
    let (status, v) = pay(&app, &a, order_id).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("hold_expired")),
        "{v}"
    );
    assert_eq!(app.scalar_i64("select count(*) from payment").await, 0);
}

#[tokio::test]
async fn a_late_payment_takes_its_unit_again_when_one_is_left() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 2, 1).await;
    let a = app.create_customers(1).await.remove(0);
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, order_id).await;
    wait_for_status(&app.pool, order_id, "expired").await;
    assert_eq!(
        app.scalar_i64(&format!(
            "select remaining::bigint from sale where id = {sale}"
        ))
        .await,
        2
    );

    // The shopper finishes paying on the provider's page after the hold ran out.
    let (status, _) = decide(&app, &payment, "succeed").await;
    assert_eq!(status, 200);
    wait_for_status(&app.pool, order_id, "paid").await;
    wait_for_payment(&app.pool, &payment, "succeeded").await;
    assert_eq!(
        app.scalar_i64(&format!(
            "select remaining::bigint from sale where id = {sale}"
        ))
        .await,
        1
    );
    invariants_hold(&app.pool, sale).await.unwrap();
    payments_consistent(&app).await;
    assert_eq!(emails(&app, "payment_received", order_id).await, 1);
}

#[tokio::test]
async fn a_late_payment_without_a_unit_left_is_refunded() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 1).await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().unwrap();
    let late = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, late).await;
    wait_for_status(&app.pool, late, "expired").await;
    // The unit went to the next shopper meanwhile.
    let taken = app.buy(sale, &b, 1).await["id"].as_i64().unwrap();

    decide(&app, &payment, "succeed").await;
    wait_for_status(&app.pool, late, "refunded").await;
    // The refund worker gets the money back from the provider.
    wait_for_payment(&app.pool, &payment, "refunded").await;
    let id = payment["id"].as_str().unwrap();
    let (_, charge) = body(
        app.get(&format!("/api/v1/test-provider/payments/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(charge["status"], "refunded", "{charge}");
    assert_eq!(emails(&app, "order_refunded", late).await, 1);
    // The other shopper keeps the unit.
    let status: String = sqlx::query_scalar("select status from purchase_order where id = $1")
        .bind(taken)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending_payment");
    invariants_hold(&app.pool, sale).await.unwrap();
    payments_consistent(&app).await;
}

#[tokio::test]
async fn forged_missing_stale_and_mismatched_webhooks_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 600).await;
    let a = app.create_customers(1).await.remove(0);
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, order_id).await;
    let ev = event("evt_forged", "payment.succeeded", &payment);

    let other_secret = b"not-the-webhook-secret-not-the-webhook-secret";
    for resp in [
        deliver(&app, &ev, other_secret, now()).await,
        deliver(&app, &ev, WEBHOOK_SECRET, now() - 301).await,
        deliver(&app, &ev, WEBHOOK_SECRET, now() + 301).await,
    ] {
        assert_error(resp, 400, "invalid_signature").await;
    }
    let unsigned = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ev).unwrap())
        .send()
        .await
        .unwrap();
    assert_error(unsigned, 400, "invalid_signature").await;
    // A body changed after signing.
    let raw = serde_json::to_vec(&ev).unwrap();
    let header = signature::sign(WEBHOOK_SECRET, now(), &raw);
    let changed = serde_json::to_vec(&event("evt_forged", "payment.succeeded", &json!({
        "id": payment["id"], "order_id": payment["order_id"], "amount_cents": 1, "currency": payment["currency"]
    })))
    .unwrap();
    let resp = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .header(signature::HEADER, header)
        .body(changed)
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_signature").await;
    // Signed, but about another amount than the payment's.
    let mut wrong = ev.clone();
    wrong["data"]["amount_cents"] = json!(1);
    assert_error(
        deliver(&app, &wrong, WEBHOOK_SECRET, now()).await,
        400,
        "bad_request",
    )
    .await;

    assert_eq!(
        app.scalar_i64("select count(*) from payment_event").await,
        0
    );
    let status: String = sqlx::query_scalar("select status from purchase_order where id = $1")
        .bind(order_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending_payment");
}

#[tokio::test]
async fn a_webhook_delivered_many_times_at_once_pays_once() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 600).await;
    let a = app.create_customers(1).await.remove(0);
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, order_id).await;
    let ev = event("evt_twice", "payment.succeeded", &payment);

    let mut set = JoinSet::new();
    for _ in 0..8 {
        let (client, url, raw) = (
            app.client.clone(),
            app.url("/api/v1/payments/webhook"),
            serde_json::to_vec(&ev).unwrap(),
        );
        set.spawn(async move {
            let resp = client
                .post(url)
                .header(
                    signature::HEADER,
                    signature::sign(WEBHOOK_SECRET, now(), &raw),
                )
                .body(raw)
                .send()
                .await
                .unwrap();
            body(resp).await
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        let (status, v) = r.unwrap();
        assert_eq!(status, 200, "{v}");
        results.push(v["result"].as_str().unwrap().to_string());
    }
    results.sort();
    assert_eq!(
        results.iter().filter(|r| *r == "applied").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| *r == "replayed").count(),
        7,
        "{results:?}"
    );
    // A second success under another event id, and a failure after the
    // success, change nothing either.
    let (status, _) = body(
        deliver(
            &app,
            &event("evt_again", "payment.succeeded", &payment),
            WEBHOOK_SECRET,
            now(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = body(
        deliver(
            &app,
            &event("evt_late_fail", "payment.failed", &payment),
            WEBHOOK_SECRET,
            now(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);

    wait_for_status(&app.pool, order_id, "paid").await;
    wait_for_payment(&app.pool, &payment, "succeeded").await;
    assert_eq!(emails(&app, "payment_received", order_id).await, 1);
    invariants_hold(&app.pool, sale).await.unwrap();
    payments_consistent(&app).await;
    // An event type the shop does not act on is acknowledged and ignored.
    let (status, v) = body(
        deliver(
            &app,
            &event("evt_other", "payment.updated", &payment),
            WEBHOOK_SECRET,
            now(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, v["result"].as_str()),
        (200, Some("ignored")),
        "{v}"
    );
}

#[tokio::test]
async fn an_admin_cancel_of_a_paid_order_refunds_it_and_gives_the_unit_back() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 600).await;
    let a = app.create_customers(1).await.remove(0);
    let admin = app.create_user(Role::Admin).await;
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, order_id).await;
    decide(&app, &payment, "succeed").await;
    wait_for_status(&app.pool, order_id, "paid").await;

    let (status, v) = body(
        app.post(
            &format!("/api/v1/admin/orders/{order_id}/cancel"),
            Some(&admin.token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("refunded")),
        "{v}"
    );
    wait_for_payment(&app.pool, &payment, "refunded").await;
    assert_eq!(
        app.scalar_i64(&format!(
            "select remaining::bigint from sale where id = {sale}"
        ))
        .await,
        1
    );
    assert_eq!(emails(&app, "order_refunded", order_id).await, 1);
    invariants_hold(&app.pool, sale).await.unwrap();
    payments_consistent(&app).await;
    // Refunded already: cancelling again is refused.
    assert_error(
        app.post(
            &format!("/api/v1/admin/orders/{order_id}/cancel"),
            Some(&admin.token),
            &json!({}),
        )
        .await,
        409,
        "order_not_cancellable",
    )
    .await;
}

#[tokio::test]
async fn simultaneous_pays_open_one_payment_with_or_without_a_key() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 2, 600).await;
    let [a, b]: [TestUser; 2] = app.create_customers(2).await.try_into().unwrap();
    for (user, key) in [(&a, Some("pay-1")), (&b, None)] {
        let order_id = app.buy(sale, user, 1).await["id"].as_i64().unwrap();
        let mut set = JoinSet::new();
        for _ in 0..10 {
            let (client, url, token) = (
                app.client.clone(),
                app.url(&format!("/api/v1/orders/{order_id}/pay")),
                user.token.clone(),
            );
            set.spawn(async move {
                let mut req = client.post(url).bearer_auth(token);
                if let Some(k) = key {
                    req = req.header("Idempotency-Key", k);
                }
                body(req.send().await.unwrap()).await
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut created = 0;
        while let Some(r) = set.join_next().await {
            let (status, v) = r.unwrap();
            assert!(status == 201 || status == 200, "{status} {v}");
            created += usize::from(status == 201);
            ids.insert(v["id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids.len(), 1, "one payment for all: {ids:?}");
        if key.is_some() {
            // With one key every answer is the first one, replayed.
            assert_eq!(created, 10);
        }
        let rows = app
            .scalar_i64(&format!(
                "select count(*) from payment where order_id = {order_id}"
            ))
            .await;
        assert_eq!(rows, 1);
    }
}

#[tokio::test]
async fn a_failed_payment_whose_release_was_cut_short_is_released_by_the_sweeper() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 1, 600).await;
    let a = app.create_customers(1).await.remove(0);
    let order_id = app.buy(sale, &a, 1).await["id"].as_i64().unwrap();
    let payment = open_payment(&app, &a, order_id).await;
    // What a process that stopped right after recording the failure leaves.
    sqlx::query("update payment set status = 'failed', failed_at = now() where order_id = $1")
        .bind(order_id)
        .execute(&app.pool)
        .await
        .unwrap();
    wait_for_status(&app.pool, order_id, "payment_failed").await;
    wait_for_payment(&app.pool, &payment, "failed").await;
    invariants_hold(&app.pool, sale).await.unwrap();
    assert_eq!(emails(&app, "payment_failed", order_id).await, 1);
}
