//! The purchase path: one order per shopper, only inside the window, never
//! more than the stock, and nothing written when the answer is no.

use chrono::{DateTime, Utc};
use flashsale::auth::Role;
use flashsale::config::Rate;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with, TestApp, TestUser};

/// Whether `s` reads `YYYY-MM-NNNNNN`.
fn is_order_number(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && [4, 2, 6]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `(orders, remaining, stock, sell_count)` of a sale, read in one snapshot.
async fn sale_numbers(app: &TestApp, sale: i64) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from purchase_order o where o.sale_id = s.id),
                s.remaining, s.stock, p.sell_count
           from sale s join product p on p.id = s.product_id where s.id = $1",
    )
    .bind(sale)
    .fetch_one(&app.pool)
    .await
    .expect("sale numbers")
}

#[test]
fn order_numbers_are_recognised() {
    assert!(is_order_number("2025-01-000042"));
    assert!(!is_order_number("2025-1-000042"));
    assert!(!is_order_number("2025-01-00042"));
    assert!(!is_order_number("2025-01-0000a2"));
    assert!(!is_order_number("2025-01-000042-1"));
}

#[tokio::test]
async fn a_purchase_in_the_window_creates_a_confirmed_order() {
    // Arrange
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 10, 3).await;
    let sale_id = sale["id"].as_i64().unwrap();
    let buyer = app.create_user(Role::Customer).await;
    let before = app.db_now().await;

    // Act
    let (status, order) = body(app.purchase(sale_id, &buyer, Some(2)).await).await;

    // Assert: the answer
    let after = app.db_now().await;
    assert_eq!(status, 201, "{order}");
    assert!(order["id"].as_i64().is_some(), "{order}");
    let number = order["number"].as_str().expect("number");
    assert!(is_order_number(number), "order number {number:?}");
    assert_eq!(order["sale_id"], sale_id);
    assert_eq!(order["product_id"], sale["product_id"]);
    assert_eq!(order["user_id"], buyer.id);
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["unit_price_cents"], 1000);
    assert_eq!(order["total_cents"], 2000);
    assert_eq!(order["status"], "confirmed");
    let created: DateTime<Utc> =
        serde_json::from_value(order["created_at"].clone()).expect("created_at");
    assert!(
        before <= created && created <= after,
        "database time: {order}"
    );
    assert!(
        number.starts_with(&created.format("%Y-%m-").to_string()),
        "the number starts with the order's month: {order}"
    );

    // Assert: the database
    assert_eq!(sale_numbers(&app, sale_id).await, (1, 8, 10, 2));
    assert_eq!(
        app.scalar_i64(&format!(
            "select count(*) from purchase_order where id = {} and user_id = {} and quantity = 2 and total_cents = 2000",
            order["id"], buyer.id
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn a_purchase_with_no_body_buys_one() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let buyer = app.create_user(Role::Customer).await;

    let (status, order) = body(app.purchase(sale, &buyer, None).await).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["quantity"], 1);
    assert_eq!(sale_numbers(&app, sale).await, (1, 4, 5, 1));
}

#[tokio::test]
async fn a_purchase_with_an_empty_object_buys_one() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let buyer = app.create_user(Role::Customer).await;

    let resp = app
        .post(
            &format!("/api/v1/sales/{sale}/purchase"),
            Some(&buyer.token),
            &json!({}),
        )
        .await;

    let (status, order) = body(resp).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["quantity"], 1);
}

#[tokio::test]
async fn a_second_purchase_by_the_same_shopper_is_already_purchased() {
    // Arrange
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 10, 3).await["id"]
        .as_i64()
        .unwrap();
    let buyer = app.create_user(Role::Customer).await;
    app.buy(sale, &buyer, 1).await;

    // Act
    let resp = app.purchase(sale, &buyer, Some(1)).await;

    // Assert: even though the per-user limit of 3 is not reached
    assert_error(resp, 409, "already_purchased").await;
    assert_eq!(sale_numbers(&app, sale).await, (1, 9, 10, 1));
}

#[tokio::test]
async fn a_purchase_before_the_window_is_sale_not_started() {
    let app = spawn_app().await;
    let sale = app.create_sale(3600, 3600, 10, 1).await["id"]
        .as_i64()
        .unwrap();
    let buyer = app.create_user(Role::Customer).await;

    let resp = app.purchase(sale, &buyer, Some(1)).await;

    assert_error(resp, 409, "sale_not_started").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 10, 10, 0));
}

#[tokio::test]
async fn a_purchase_after_the_window_is_sale_ended() {
    let app = spawn_app().await;
    let sale = app.create_sale(-7200, 3600, 10, 1).await["id"]
        .as_i64()
        .unwrap();
    let buyer = app.create_user(Role::Customer).await;

    let resp = app.purchase(sale, &buyer, Some(1)).await;

    assert_error(resp, 409, "sale_ended").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 10, 10, 0));
}

/// A sale of a new product with exactly this window; returns its id.
async fn sale_with_window(app: &TestApp, starts: DateTime<Utc>, ends: DateTime<Utc>) -> i64 {
    let admin = app.create_user(Role::Admin).await;
    let product = app.create_product(2500).await;
    let (status, v) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({"product_id": product, "starts_at": starts, "ends_at": ends, "stock": 10}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().expect("sale id")
}

#[tokio::test]
async fn a_sale_that_started_a_moment_ago_sells() {
    // Arrange: the window opens at the database's present instant, to the
    // microsecond, so any later purchase is inside it.
    let app = spawn_app().await;
    let now = app.db_now().await;
    let sale = sale_with_window(&app, now, now + chrono::Duration::hours(1)).await;
    let buyer = app.create_user(Role::Customer).await;

    // Act
    let (status, order) = body(app.purchase(sale, &buyer, Some(1)).await).await;

    // Assert
    assert_eq!(status, 201, "{order}");
}

#[tokio::test]
async fn a_sale_that_ended_a_moment_ago_is_sale_ended() {
    // Arrange: the window closes at the database's present instant.
    let app = spawn_app().await;
    let now = app.db_now().await;
    let sale = sale_with_window(&app, now - chrono::Duration::hours(1), now).await;
    let buyer = app.create_user(Role::Customer).await;

    // Act
    let resp = app.purchase(sale, &buyer, Some(1)).await;

    // Assert
    assert_error(resp, 409, "sale_ended").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 10, 10, 0));
}

#[tokio::test]
async fn a_purchase_in_a_cancelled_sale_is_sale_cancelled() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.active_sale(10).await;
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
    let buyer = app.create_user(Role::Customer).await;

    // Act
    let resp = app.purchase(sale, &buyer, Some(1)).await;

    // Assert
    assert_error(resp, 409, "sale_cancelled").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 10, 10, 0));
}

#[tokio::test]
async fn a_purchase_in_an_unknown_sale_is_not_found() {
    let app = spawn_app().await;
    let buyer = app.create_user(Role::Customer).await;

    let resp = app.purchase(987654321, &buyer, Some(1)).await;

    assert_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn a_purchase_without_a_token_is_unauthorized() {
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;

    let resp = app
        .post(
            &format!("/api/v1/sales/{sale}/purchase"),
            None,
            &json!({"quantity": 1}),
        )
        .await;

    assert_error(resp, 401, "unauthorized").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 5, 5, 0));
}

#[tokio::test]
async fn more_than_the_per_user_limit_is_quantity_exceeds_limit() {
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 10, 2).await["id"]
        .as_i64()
        .unwrap();
    let buyer = app.create_user(Role::Customer).await;

    let resp = app.purchase(sale, &buyer, Some(3)).await;

    assert_error(resp, 422, "quantity_exceeds_limit").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 10, 10, 0));
    // The refusal used nothing up: the shopper may still buy within the limit.
    app.buy(sale, &buyer, 2).await;
}

#[tokio::test]
async fn quantities_out_of_range_are_validation_errors() {
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 10, 3).await["id"]
        .as_i64()
        .unwrap();
    let buyer = app.create_user(Role::Customer).await;

    for quantity in [json!(0), json!(-1), json!("two"), json!(1.5)] {
        let resp = app
            .post(
                &format!("/api/v1/sales/{sale}/purchase"),
                Some(&buyer.token),
                &json!({ "quantity": quantity }),
            )
            .await;
        assert_error(resp, 422, "validation_failed").await;
    }
    assert_eq!(sale_numbers(&app, sale).await, (0, 10, 10, 0));
}

#[tokio::test]
async fn more_than_what_remains_is_sold_out_and_writes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 2, 3).await["id"]
        .as_i64()
        .unwrap();
    let buyer = app.create_user(Role::Customer).await;

    // Act
    let resp = app.purchase(sale, &buyer, Some(3)).await;

    // Assert
    assert_error(resp, 409, "sold_out").await;
    assert_eq!(sale_numbers(&app, sale).await, (0, 2, 2, 0));
    // What does remain can still be bought.
    app.buy(sale, &buyer, 2).await;
    assert_eq!(sale_numbers(&app, sale).await, (1, 0, 2, 2));
}

#[tokio::test]
async fn a_purchase_after_the_last_unit_is_sold_out() {
    // Arrange
    let app = spawn_app().await;
    let sale = app.active_sale(1).await;
    let first = app.create_user(Role::Customer).await;
    let second = app.create_user(Role::Customer).await;
    app.buy(sale, &first, 1).await;

    // Act
    let resp = app.purchase(sale, &second, Some(1)).await;

    // Assert
    assert_error(resp, 409, "sold_out").await;
    assert_eq!(sale_numbers(&app, sale).await, (1, 0, 1, 1));
}

/// Sends `n` purchases by `user` at once; returns each answer's status,
/// `Retry-After` and body.
async fn simultaneous_purchases(
    app: &TestApp,
    sale: i64,
    user: &TestUser,
    n: usize,
) -> Vec<(u16, Option<String>, Value)> {
    let requests = (0..n).map(|_| async {
        let resp = app.purchase(sale, user, Some(1)).await;
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").to_string());
        let (status, v) = body(resp).await;
        (status, retry_after, v)
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn quick_repeated_purchases_by_one_shopper_are_rate_limited() {
    // Arrange: one purchase a second, in bursts of two.
    let app = spawn_app_with(|s| s.purchase_rate = Rate::new(1, 2)).await;
    let sale = app.active_sale(100).await;
    let buyer = app.create_user(Role::Customer).await;

    // Act
    let answers = simultaneous_purchases(&app, sale, &buyer, 5).await;

    // Assert
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "one order: {answers:?}"
    );
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(!limited.is_empty(), "some were rate limited: {statuses:?}");
    for (_, retry_after, v) in &limited {
        assert_eq!(v["error"]["code"], "rate_limited", "{v}");
        let secs: u64 = retry_after
            .as_deref()
            .expect("a 429 carries Retry-After")
            .parse()
            .expect("Retry-After is whole seconds");
        assert!((1..=2).contains(&secs), "Retry-After {secs}");
    }
    for (status, _, v) in &answers {
        assert!(
            [201, 429].contains(status) || v["error"]["code"] == "already_purchased",
            "only one order, then already_purchased or rate_limited: {statuses:?} {v}"
        );
    }
    assert_eq!(sale_numbers(&app, sale).await, (1, 99, 100, 1));
}

#[tokio::test]
async fn the_purchase_rate_limit_is_per_shopper() {
    // Arrange: the first shopper uses up their burst and gets limited.
    let app = spawn_app_with(|s| s.purchase_rate = Rate::new(1, 2)).await;
    let sale = app.active_sale(100).await;
    let greedy = app.create_user(Role::Customer).await;
    let patient = app.create_user(Role::Customer).await;
    let answers = simultaneous_purchases(&app, sale, &greedy, 5).await;
    assert!(answers.iter().any(|a| a.0 == 429), "{answers:?}");

    // Act: another shopper right away
    let (status, order) = body(app.purchase(sale, &patient, Some(1)).await).await;

    // Assert
    assert_eq!(status, 201, "another shopper is not limited: {order}");
    assert_eq!(order["user_id"], patient.id);
}
