//! What sellers are told counts catalog orders beside sale orders, per
//! currency: the revenue report, the daily digest and best sellers.

use serde_json::{json, Value};

use flashsale::auth::Role;

use crate::cart::{book, checkout, set};
use crate::helpers::{body, spawn_app, TestApp, TestUser};
use crate::holds::wait_for_status;
use crate::payments::{decide, open_payment};

/// `shopper` checks out `(product, quantity)` and pays for it.
async fn bought(app: &TestApp, shopper: &TestUser, product: i64, quantity: i64) {
    set(app, shopper, product, quantity).await;
    let (status, order) = checkout(app, shopper).await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_i64().unwrap();
    let payment = open_payment(app, shopper, id).await;
    decide(app, &payment, "succeed").await;
    wait_for_status(&app.pool, id, "paid").await;
}

#[tokio::test]
async fn revenue_digests_and_best_sellers_count_catalog_orders_per_currency() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let euro = book(&app, &seller, "Euro book", 1000, 10, "EUR").await;
    let dollar = book(&app, &seller, "Dollar book", 3000, 10, "USD").await;
    let shoppers = app.create_customers(3).await;
    bought(&app, &shoppers[0], euro, 2).await;
    bought(&app, &shoppers[1], dollar, 1).await;
    // A sale order of the euro book too (confirmed at once).
    let sale = app.create_sale_of(euro, -5, 3600, 5, 1).await;
    app.buy(sale["id"].as_i64().unwrap(), &shoppers[2], 1).await;

    let (status, r) = body(app.get("/api/v1/seller/revenue", Some(&seller.token)).await).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["total_units"], 4);
    assert_eq!(
        r["total_revenue_cents"],
        Value::Null,
        "EUR and USD are never added: {r}"
    );
    assert_eq!(
        r["totals"],
        json!([{"currency": "EUR", "units": 3, "revenue_cents": 3000},
               {"currency": "USD", "units": 1, "revenue_cents": 3000}])
    );
    let euro_line = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["product_id"] == euro)
        .unwrap();
    assert_eq!(
        (euro_line["units"].clone(), euro_line["currency"].clone()),
        (json!(3), json!("EUR"))
    );

    let (_, best) = body(
        app.get("/api/v1/products?sort=best_selling&limit=1", None)
            .await,
    )
    .await;
    assert_eq!(best["items"][0]["id"], euro, "{best}");
    assert_eq!(best["items"][0]["sell_count"], 3);

    // The daily digest of "yesterday" (orders moved back a day, in a shop
    // set up long before), run by an admin with mail off: its payload waits
    // in the outbox.
    sqlx::query("update purchase_order set created_at = created_at - interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("update _sqlx_migrations set installed_on = installed_on - interval '40 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    let admin = app.create_user(Role::Admin).await;
    let (status, v) = body(
        app.post(
            "/api/v1/admin/jobs/seller_daily_digest/run",
            Some(&admin.token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let payload: Value = sqlx::query_scalar(
        "select payload from outbox where kind = 'seller_daily_digest' and user_id = $1",
    )
    .bind(seller.id)
    .fetch_one(&app.pool)
    .await
    .expect("the seller's digest");
    let mut lines: Vec<(String, String, i64, i64, i64)> = payload["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["product"].as_str().unwrap().to_string(),
                l["currency"].as_str().unwrap().to_string(),
                l["orders"].as_i64().unwrap(),
                l["units"].as_i64().unwrap(),
                l["revenue_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            ("Dollar book".into(), "USD".into(), 1, 1, 3000),
            ("Euro book".into(), "EUR".into(), 2, 3, 3000)
        ]
    );
}
