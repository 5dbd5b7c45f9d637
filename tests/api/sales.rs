//! Scheduling, rescheduling and cancelling sales, and reading their state by
//! the database clock.

use chrono::{DateTime, Duration, Utc};
use flashsale::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, spawn_app, TestApp};

fn time(v: &Value) -> DateTime<Utc> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v} is not RFC 3339: {e}"))
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

async fn get_sale(app: &TestApp, sale: i64) -> Value {
    let (status, v) = body(app.get(&format!("/api/v1/sales/{sale}"), None).await).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn list_ids(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, v) = body(app.get(&format!("/api/v1/sales{query}"), None).await).await;
    assert_eq!(status, 200, "{v}");
    let mut ids: Vec<i64> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn an_admin_schedules_a_sale_at_the_products_price() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let product = app.create_product(2500).await;
    let starts = app.db_now().await + Duration::seconds(600);
    let ends = starts + Duration::seconds(3600);

    // Act
    let (status, sale) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({"product_id": product, "starts_at": starts, "ends_at": ends, "stock": 40}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 201, "{sale}");
    assert_eq!(sale["product_id"], product);
    assert_eq!(sale["product"]["id"], product);
    assert_eq!(time(&sale["starts_at"]), starts);
    assert_eq!(time(&sale["ends_at"]), ends);
    assert_eq!(sale["stock"], 40);
    assert_eq!(sale["remaining"], 40, "a new sale has all its stock");
    assert_eq!(
        sale["price_cents"], 2500,
        "the price defaults to the product's"
    );
    assert_eq!(sale["per_user_limit"], 1, "one per customer by default");
    assert_eq!(sale["state"], "upcoming");
    assert!(sale["server_time"].is_string(), "{sale}");
    assert_eq!(
        app.scalar_i64(&format!(
            "select count(*) from sale where id = {} and remaining = 40 and price_cents = 2500",
            id(&sale)
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn a_sale_may_have_its_own_price_and_limit() {
    let app = spawn_app().await;

    let sale = app.create_sale(600, 3600, 7, 3).await;

    assert_eq!(sale["price_cents"], 1000);
    assert_eq!(sale["per_user_limit"], 3);
    assert_eq!(
        sale["product"]["price_cents"], 2500,
        "the product keeps its price"
    );
}

#[tokio::test]
async fn the_state_of_a_new_sale_follows_the_database_clock() {
    let app = spawn_app().await;

    let upcoming = app.create_sale(60, 3600, 5, 1).await;
    let active = app.create_sale(-60, 3600, 5, 1).await;
    let ended = app.create_sale(-7200, 3600, 5, 1).await;

    assert_eq!(upcoming["state"], "upcoming");
    assert_eq!(active["state"], "active");
    assert_eq!(ended["state"], "ended");
}

#[tokio::test]
async fn a_sale_of_an_unknown_product_is_a_validation_error() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let starts = app.db_now().await + Duration::seconds(60);

    // Act
    let resp = app
        .post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({"product_id": 987654321, "starts_at": starts,
                    "ends_at": starts + Duration::seconds(60), "stock": 5}),
        )
        .await;

    // Assert
    let v = assert_error(resp, 422, "validation_failed").await;
    assert!(
        v["error"]["details"]["fields"]["product_id"].is_string(),
        "{v}"
    );
    assert_eq!(app.scalar_i64("select count(*) from sale").await, 0);
}

#[tokio::test]
async fn a_sale_must_end_after_it_starts() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let product = app.create_product(2500).await;
    let starts = app.db_now().await + Duration::seconds(60);

    for ends in [starts, starts - Duration::seconds(1)] {
        let resp = app
            .post(
                "/api/v1/sales",
                Some(&admin.token),
                &json!({"product_id": product, "starts_at": starts, "ends_at": ends, "stock": 5}),
            )
            .await;
        let v = assert_error(resp, 422, "validation_failed").await;
        assert!(
            v["error"]["details"]["fields"]["ends_at"].is_string(),
            "{v}"
        );
    }
    assert_eq!(app.scalar_i64("select count(*) from sale").await, 0);
}

#[tokio::test]
async fn an_admin_reschedules_and_restocks_a_sale_before_it_starts() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(600, 3600, 10, 1).await;
    let new_start = app.db_now().await + Duration::seconds(1800);
    let new_end = new_start + Duration::seconds(900);

    // Act
    let (status, changed) = body(
        app.patch(
            &format!("/api/v1/sales/{}", id(&sale)),
            Some(&admin.token),
            &json!({"starts_at": new_start, "ends_at": new_end, "stock": 25}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{changed}");
    assert_eq!(time(&changed["starts_at"]), new_start);
    assert_eq!(time(&changed["ends_at"]), new_end);
    assert_eq!(changed["stock"], 25);
    assert_eq!(changed["remaining"], 25, "remaining follows the stock");
    assert_eq!(changed["state"], "upcoming");
    let stored = get_sale(&app, id(&sale)).await;
    assert_eq!(stored["stock"], 25);
    assert_eq!(stored["remaining"], 25);
    assert_eq!(time(&stored["starts_at"]), new_start);
}

#[tokio::test]
async fn lowering_the_stock_before_the_start_lowers_remaining() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(600, 3600, 10, 1).await;

    let (status, changed) = body(
        app.patch(
            &format!("/api/v1/sales/{}", id(&sale)),
            Some(&admin.token),
            &json!({"stock": 3}),
        )
        .await,
    )
    .await;

    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["stock"], 3);
    assert_eq!(changed["remaining"], 3);
    assert_eq!(changed["starts_at"], sale["starts_at"], "the window stays");
}

#[tokio::test]
async fn a_reschedule_that_ends_before_it_starts_is_refused() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(600, 3600, 10, 1).await;
    let after_the_end = time(&sale["ends_at"]) + Duration::seconds(1);

    let resp = app
        .patch(
            &format!("/api/v1/sales/{}", id(&sale)),
            Some(&admin.token),
            &json!({"starts_at": after_the_end}),
        )
        .await;

    assert_error(resp, 422, "validation_failed").await;
    assert_eq!(
        get_sale(&app, id(&sale)).await["starts_at"],
        sale["starts_at"]
    );
}

#[tokio::test]
async fn a_started_sale_can_no_longer_be_rescheduled_or_restocked() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(-1, 3600, 10, 1).await;
    let path = format!("/api/v1/sales/{}", id(&sale));
    let later = app.db_now().await + Duration::seconds(600);

    for change in [
        json!({"stock": 20}),
        json!({"starts_at": later}),
        json!({"ends_at": later + Duration::seconds(7200)}),
    ] {
        // Act
        let resp = app.patch(&path, Some(&admin.token), &change).await;

        // Assert
        assert_error(resp, 409, "sale_already_started").await;
    }
    let stored = get_sale(&app, id(&sale)).await;
    assert_eq!(stored["stock"], 10);
    assert_eq!(stored["remaining"], 10);
    assert_eq!(stored["starts_at"], sale["starts_at"]);
    assert_eq!(stored["ends_at"], sale["ends_at"]);
}

#[tokio::test]
async fn an_admin_cancels_a_sale() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(-60, 3600, 10, 1).await;

    // Act
    let (status, changed) = body(
        app.patch(
            &format!("/api/v1/sales/{}", id(&sale)),
            Some(&admin.token),
            &json!({"cancelled": true}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["state"], "cancelled");
    assert_eq!(get_sale(&app, id(&sale)).await["state"], "cancelled");
    let (_, status) = body(
        app.get(&format!("/api/v1/sales/{}/status", id(&sale)), None)
            .await,
    )
    .await;
    assert_eq!(status["state"], "cancelled");
}

#[tokio::test]
async fn a_cancelled_sale_can_no_longer_change() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(600, 3600, 10, 1).await;
    let path = format!("/api/v1/sales/{}", id(&sale));
    let (status, v) = body(
        app.patch(&path, Some(&admin.token), &json!({"cancelled": true}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");

    let resp = app
        .patch(&path, Some(&admin.token), &json!({"stock": 20}))
        .await;

    assert_error(resp, 409, "sale_cancelled").await;
    assert_eq!(get_sale(&app, id(&sale)).await["stock"], 10);
}

#[tokio::test]
async fn an_ended_sale_cannot_be_cancelled() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.create_sale(-7200, 3600, 10, 1).await;

    let resp = app
        .patch(
            &format!("/api/v1/sales/{}", id(&sale)),
            Some(&admin.token),
            &json!({"cancelled": true}),
        )
        .await;

    assert_error(resp, 409, "sale_ended").await;
    assert_eq!(get_sale(&app, id(&sale)).await["state"], "ended");
}

#[tokio::test]
async fn a_customer_cannot_change_a_sale() {
    let app = spawn_app().await;
    let customer = app.create_user(Role::Customer).await;
    let sale = app.create_sale(600, 3600, 10, 1).await;

    let resp = app
        .patch(
            &format!("/api/v1/sales/{}", id(&sale)),
            Some(&customer.token),
            &json!({"cancelled": true}),
        )
        .await;

    assert_error(resp, 403, "forbidden").await;
    assert_eq!(get_sale(&app, id(&sale)).await["state"], "upcoming");
}

#[tokio::test]
async fn sales_are_listed_by_state() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let upcoming = id(&app.create_sale(600, 3600, 5, 1).await);
    let active = id(&app.create_sale(-60, 3600, 5, 1).await);
    let sold_out = id(&app.create_sale(-60, 3600, 1, 1).await);
    let ended = id(&app.create_sale(-7200, 3600, 5, 1).await);
    let cancelled = id(&app.create_sale(600, 3600, 5, 1).await);
    let buyer = app.create_user(Role::Customer).await;
    app.buy(sold_out, &buyer, 1).await;
    let (status, v) = body(
        app.patch(
            &format!("/api/v1/sales/{cancelled}"),
            Some(&admin.token),
            &json!({"cancelled": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");

    // Act + Assert
    assert_eq!(list_ids(&app, "?state=upcoming").await, vec![upcoming]);
    assert_eq!(
        list_ids(&app, "?state=active").await,
        vec![active, sold_out],
        "a sold-out sale is still inside its window"
    );
    assert_eq!(list_ids(&app, "?state=ended").await, vec![ended]);
    assert_eq!(list_ids(&app, "?state=cancelled").await, vec![cancelled]);
    assert_eq!(
        list_ids(&app, "").await,
        vec![upcoming, active, sold_out, ended, cancelled]
    );
}

#[tokio::test]
async fn an_unknown_state_filter_is_a_validation_error() {
    let app = spawn_app().await;

    let resp = app.get("/api/v1/sales?state=soon", None).await;

    assert_error(resp, 422, "validation_failed").await;
}

#[tokio::test]
async fn a_sale_tells_the_database_time() {
    // Arrange
    let app = spawn_app().await;
    let sale = id(&app.create_sale(600, 3600, 5, 1).await);

    // Act
    let before = app.db_now().await;
    let v = get_sale(&app, sale).await;
    let after = app.db_now().await;

    // Assert
    let server_time = time(&v["server_time"]);
    assert!(
        before <= server_time && server_time <= after,
        "server_time {server_time} is the database clock, between {before} and {after}"
    );
    let product = &v["product"];
    for key in ["id", "seller_id", "name", "price_cents", "sell_count"] {
        assert!(!product[key].is_null(), "the sale carries its product: {v}");
    }
}

#[tokio::test]
async fn an_unknown_sale_is_not_found() {
    let app = spawn_app().await;

    assert_error(
        app.get("/api/v1/sales/987654321", None).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/api/v1/sales/987654321/status", None).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_status_is_the_cheap_countdown_view() {
    // Arrange
    let app = spawn_app().await;
    let sale = app.create_sale(600, 3600, 5, 1).await;

    // Act
    let before = app.db_now().await;
    let (status, v) = body(
        app.get(&format!("/api/v1/sales/{}/status", id(&sale)), None)
            .await,
    )
    .await;
    let after = app.db_now().await;

    // Assert
    assert_eq!(status, 200, "{v}");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "admit_per_sec",
            "admitted_through",
            "ends_at",
            "remaining",
            "server_time",
            "starts_at",
            "state"
        ]
    );
    // No waiting room: no admission to follow.
    assert_eq!(
        (&v["admitted_through"], &v["admit_per_sec"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(v["state"], "upcoming");
    assert_eq!(v["remaining"], 5);
    assert_eq!(time(&v["starts_at"]), time(&sale["starts_at"]));
    assert_eq!(time(&v["ends_at"]), time(&sale["ends_at"]));
    // The status is served from memory, with the database clock estimated
    // from a reading whose error is at most half its round trip.
    let server_time = time(&v["server_time"]);
    let slack = Duration::milliseconds(50);
    assert!(
        before - slack <= server_time && server_time <= after + slack,
        "{before} <= {server_time} <= {after}"
    );
}

#[tokio::test]
async fn a_sale_whose_stock_is_gone_is_sold_out() {
    // Arrange
    let app = spawn_app().await;
    let sale = app.active_sale(1).await;
    let buyer = app.create_user(Role::Customer).await;

    // Act
    app.buy(sale, &buyer, 1).await;

    // Assert
    let (_, status) = body(app.get(&format!("/api/v1/sales/{sale}/status"), None).await).await;
    assert_eq!(status["state"], "sold_out", "{status}");
    assert_eq!(status["remaining"], 0);
    let v = get_sale(&app, sale).await;
    assert_eq!(v["state"], "sold_out");
    assert_eq!(v["remaining"], 0);
}

#[tokio::test]
async fn admin_stats_count_units_orders_buyers_and_revenue() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = id(&app.create_sale(-60, 3600, 10, 3).await);
    let buyers = app.create_customers(3).await;

    // Act
    for (buyer, quantity) in buyers.iter().zip(1..=3) {
        app.buy(sale, buyer, quantity).await;
    }
    let (status, stats) = body(
        app.get(
            &format!("/api/v1/admin/sales/{sale}/stats"),
            Some(&admin.token),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({"sale_id": sale, "stock": 10, "sold": 6, "pending": 0, "paid": 0, "remaining": 4,
               "orders": 3, "buyers": 3, "revenue_cents": 6000})
    );
}

#[tokio::test]
async fn admin_stats_of_a_sale_without_orders_are_zero() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let sale = app.active_sale(8).await;

    let (status, stats) = body(
        app.get(
            &format!("/api/v1/admin/sales/{sale}/stats"),
            Some(&admin.token),
        )
        .await,
    )
    .await;

    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({"sale_id": sale, "stock": 8, "sold": 0, "pending": 0, "paid": 0, "remaining": 8,
               "orders": 0, "buyers": 0, "revenue_cents": 0})
    );
}

#[tokio::test]
async fn only_admins_read_sale_stats() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let sale = app.active_sale(8).await;

    let resp = app
        .get(
            &format!("/api/v1/admin/sales/{sale}/stats"),
            Some(&seller.token),
        )
        .await;

    assert_error(resp, 403, "forbidden").await;
}
