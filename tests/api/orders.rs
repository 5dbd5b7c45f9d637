//! Shoppers read their orders; sellers and admins read revenue.

use flashsale::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, spawn_app, TestApp};

fn ids(list: &Value) -> Vec<i64> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["id"].as_i64().expect("id"))
        .collect()
}

async fn revenue(app: &TestApp, token: &str, month: &str) -> Value {
    let (status, v) = body(
        app.get(
            &format!("/api/v1/seller/revenue?month={month}"),
            Some(token),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// `(product_id, units, revenue_cents)` of each line of a revenue report.
fn lines(report: &Value) -> Vec<(i64, i64, i64)> {
    let mut lines: Vec<(i64, i64, i64)> = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["product_id"].as_i64().expect("product_id"),
                l["units"].as_i64().expect("units"),
                l["revenue_cents"].as_i64().expect("revenue_cents"),
            )
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_shopper_lists_their_own_orders_newest_first() {
    // Arrange
    let app = spawn_app().await;
    let me = app.create_user(Role::Customer).await;
    let someone = app.create_user(Role::Customer).await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        let sale = app.active_sale(5).await;
        mine.push(app.buy(sale, &me, 1).await);
        app.buy(sale, &someone, 1).await;
    }

    // Act
    let (status, list) = body(app.get("/api/v1/orders", Some(&me.token)).await).await;

    // Assert
    assert_eq!(status, 200, "{list}");
    let expected: Vec<i64> = mine
        .iter()
        .rev()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids(&list), expected, "mine only, newest first");
    assert_eq!(
        list["items"][0], mine[2],
        "each item is the order as it was answered"
    );
}

#[tokio::test]
async fn a_shopper_without_orders_gets_an_empty_list() {
    let app = spawn_app().await;
    let me = app.create_user(Role::Customer).await;
    let someone = app.create_user(Role::Customer).await;
    app.buy(app.active_sale(5).await, &someone, 1).await;

    let (status, list) = body(app.get("/api/v1/orders", Some(&me.token)).await).await;

    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!({"items": []}));
}

#[tokio::test]
async fn orders_need_a_token() {
    let app = spawn_app().await;

    assert_error(app.get("/api/v1/orders", None).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_shopper_reads_their_own_order() {
    let app = spawn_app().await;
    let me = app.create_user(Role::Customer).await;
    let order = app.buy(app.active_sale(5).await, &me, 1).await;

    let (status, read) = body(
        app.get(&format!("/api/v1/orders/{}", order["id"]), Some(&me.token))
            .await,
    )
    .await;

    assert_eq!(status, 200, "{read}");
    assert_eq!(read, order);
}

#[tokio::test]
async fn someone_elses_order_is_not_found() {
    // Arrange
    let app = spawn_app().await;
    let owner = app.create_user(Role::Customer).await;
    let snoop = app.create_user(Role::Customer).await;
    let seller = app.create_user(Role::Seller).await;
    let order = app.buy(app.active_sale(5).await, &owner, 1).await;
    let path = format!("/api/v1/orders/{}", order["id"]);

    // Act + Assert: the same answer as for an order that does not exist
    assert_error(app.get(&path, Some(&snoop.token)).await, 404, "not_found").await;
    assert_error(app.get(&path, Some(&seller.token)).await, 404, "not_found").await;
    assert_error(
        app.get("/api/v1/orders/987654321", Some(&snoop.token))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn an_admin_reads_any_order() {
    let app = spawn_app().await;
    let owner = app.create_user(Role::Customer).await;
    let admin = app.create_user(Role::Admin).await;
    let order = app.buy(app.active_sale(5).await, &owner, 1).await;

    let (status, read) = body(
        app.get(
            &format!("/api/v1/orders/{}", order["id"]),
            Some(&admin.token),
        )
        .await,
    )
    .await;

    assert_eq!(status, 200, "{read}");
    assert_eq!(read, order);
}

#[tokio::test]
async fn sellers_see_the_revenue_of_their_own_products_and_admins_see_all() {
    // Arrange: seller A has two products, seller B one; shoppers buy in sales
    // of each at the products' own prices.
    let app = spawn_app().await;
    let seller_a = app.create_user(Role::Seller).await;
    let seller_b = app.create_user(Role::Seller).await;
    let admin = app.create_user(Role::Admin).await;
    let a1 = app.create_product_by(&seller_a, 1000).await["id"]
        .as_i64()
        .unwrap();
    let a2 = app.create_product_by(&seller_a, 250).await["id"]
        .as_i64()
        .unwrap();
    let b1 = app.create_product_by(&seller_b, 4000).await["id"]
        .as_i64()
        .unwrap();
    let _unsold = app.create_product_by(&seller_a, 99).await;
    let shoppers = app.create_customers(3).await;
    for (product, quantities) in [(a1, vec![2, 3]), (a2, vec![1, 1, 2]), (b1, vec![1])] {
        let sale = app.create_sale_of(product, -60, 3600, 100, 3).await["id"]
            .as_i64()
            .unwrap();
        for (shopper, q) in shoppers.iter().zip(quantities) {
            app.buy(sale, shopper, q).await;
        }
    }
    let month = app.db_now().await.format("%Y-%m").to_string();

    // Act
    let for_a = revenue(&app, &seller_a.token, &month).await;
    let for_b = revenue(&app, &seller_b.token, &month).await;
    let for_admin = revenue(&app, &admin.token, &month).await;

    // Assert
    assert_eq!(for_a["month"], month);
    assert_eq!(lines(&for_a), vec![(a1, 5, 5000), (a2, 4, 1000)], "{for_a}");
    assert_eq!(for_a["total_units"], 9);
    assert_eq!(for_a["total_revenue_cents"], 6000);
    assert_eq!(lines(&for_b), vec![(b1, 1, 4000)], "{for_b}");
    assert_eq!(
        lines(&for_admin),
        vec![(a1, 5, 5000), (a2, 4, 1000), (b1, 1, 4000)],
        "{for_admin}"
    );
    assert_eq!(for_admin["total_revenue_cents"], 10000);
}

#[tokio::test]
async fn another_months_revenue_leaves_this_months_orders_out() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let shopper = app.create_user(Role::Customer).await;
    let product = app.create_product_by(&seller, 1000).await["id"]
        .as_i64()
        .unwrap();
    let sale = app.create_sale_of(product, -60, 3600, 10, 1).await["id"]
        .as_i64()
        .unwrap();
    app.buy(sale, &shopper, 1).await;
    let last_year = (app.db_now().await - chrono::Duration::days(366))
        .format("%Y-%m")
        .to_string();

    let report = revenue(&app, &seller.token, &last_year).await;

    assert_eq!(report["items"], json!([]), "{report}");
    assert_eq!(report["total_units"], 0);
}

#[tokio::test]
async fn a_malformed_month_is_a_validation_error() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;

    for month in [
        "2024-13", "2024-00", "2024-1", "24-01", "2024/01", "january", "",
    ] {
        let resp = app
            .get(
                &format!("/api/v1/seller/revenue?month={month}"),
                Some(&seller.token),
            )
            .await;
        assert_error(resp, 422, "validation_failed").await;
    }
}

#[tokio::test]
async fn customers_cannot_read_revenue() {
    let app = spawn_app().await;
    let customer = app.create_user(Role::Customer).await;
    let month = app.db_now().await.format("%Y-%m").to_string();

    let resp = app
        .get(
            &format!("/api/v1/seller/revenue?month={month}"),
            Some(&customer.token),
        )
        .await;

    assert_error(resp, 403, "forbidden").await;
}
