//! `GET /admin/sales/{id}/orders`: a sale's orders for its admin, newest
//! first, with their buyers, filtered by status and paged.

use serde_json::{json, Value};

use flashsale::auth::Role;

use crate::helpers::{assert_error, body, spawn_app, TestApp};
use crate::holds::hold_sale;

async fn list(app: &TestApp, token: &str, sale: i64, query: &str) -> Vec<Value> {
    let (status, v) = body(
        app.get(
            &format!("/api/v1/admin/sales/{sale}/orders{query}"),
            Some(token),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().expect("items").clone()
}

fn numbers(items: &[Value]) -> Vec<Value> {
    items.iter().map(|o| o["number"].clone()).collect()
}

#[tokio::test]
async fn an_admin_lists_a_sales_orders_newest_first_with_buyers_by_status_and_paged() {
    // Arrange: three holds in one sale, one of them cancelled; an order in
    // another sale.
    let app = spawn_app().await;
    let sale = hold_sale(&app, 5, 600).await;
    let other = hold_sale(&app, 5, 600).await;
    let admin = app.create_user(Role::Admin).await;
    let shoppers = app.create_customers(4).await;
    let mut bought = Vec::new();
    for s in &shoppers[..3] {
        bought.push(app.buy(sale, s, 1).await);
    }
    app.buy(other, &shoppers[3], 1).await;
    let cancelled = &bought[1];
    let (status, v) = body(
        app.post(
            &format!("/api/v1/admin/orders/{}/cancel", cancelled["id"]),
            Some(&admin.token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );

    // Act
    let all = list(&app, &admin.token, sale, "").await;
    let only_cancelled = list(&app, &admin.token, sale, "?status=cancelled").await;
    let pending = list(&app, &admin.token, sale, "?status=pending_payment").await;
    let second = list(&app, &admin.token, sale, "?limit=1&offset=1").await;

    // Assert
    let newest_first: Vec<Value> = bought.iter().rev().map(|o| o["number"].clone()).collect();
    assert_eq!(numbers(&all), newest_first);
    assert_eq!(all[2]["username"], shoppers[0].username.as_str());
    assert_eq!(all[2]["user_id"], shoppers[0].id);
    assert_eq!(all[0]["status"], "pending_payment");
    assert!(all[0]["expires_at"].is_string(), "{}", all[0]);
    assert_eq!(numbers(&only_cancelled), vec![cancelled["number"].clone()]);
    assert_eq!(
        numbers(&pending),
        vec![bought[2]["number"].clone(), bought[0]["number"].clone()]
    );
    assert_eq!(numbers(&second), vec![cancelled["number"].clone()]);
}

#[tokio::test]
async fn only_admins_list_a_sales_orders_and_bad_queries_are_refused() {
    let app = spawn_app().await;
    let sale = hold_sale(&app, 5, 600).await;
    let admin = app.create_user(Role::Admin).await;
    let path = format!("/api/v1/admin/sales/{sale}/orders");

    assert_error(app.get(&path, None).await, 401, "unauthorized").await;
    for role in [Role::Customer, Role::Seller] {
        let user = app.create_user(role).await;
        assert_error(app.get(&path, Some(&user.token)).await, 403, "forbidden").await;
    }
    for query in ["?status=shipped", "?limit=0", "?limit=101", "?offset=-1"] {
        assert_error(
            app.get(&format!("{path}{query}"), Some(&admin.token)).await,
            422,
            "validation_failed",
        )
        .await;
    }
    assert_error(
        app.get("/api/v1/admin/sales/999999/orders", Some(&admin.token))
            .await,
        404,
        "not_found",
    )
    .await;
    assert!(list(&app, &admin.token, sale, "").await.is_empty());
}
